"""The one training recipe every face runs (``prepare_run``, issue #38 §6): default settings,
fine-tuning into another class count, multi-channel and RGBA training, RGB on a grayscale model,
validation, the continue rule and the warnings a face shows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_cellprep.engine.checkpoint import load_checkpoint
from napari_cellprep.engine.errors import CellprepError, SettingsError, TrainingDataError
from napari_cellprep.engine.events import drive
from napari_cellprep.engine.images.labels import CORRECTION_WEIGHT, LabelKind
from napari_cellprep.engine.images.normalize import Normalization, normalize_channels
from napari_cellprep.engine.training.data import LabeledImage
from napari_cellprep.engine.training.plan import (
    CONTINUE_DEFAULTS,
    DEFAULT_VAL_FRACTION,
    FINE_TUNE_DEFAULTS,
    TrainConfig,
    continues_fine_tuning,
    training_settings,
)
from napari_cellprep.engine.training.recipe import LabeledInput, RunPlan, prepare_run
from napari_cellprep.model import PAPER
from tests.conftest import disks

SMALL = {"epochs": 1, "steps_per_epoch": 1, "patch_size": 32, "device": "cpu"}
NEW = {"width": 4, "depth": 2}


def rgba(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 64² RGBA uint8 image of bright disks (alpha opaque) and its 0/1 mask."""
    image, mask = disks(seed, (64, 64))
    gray = (image / image.max() * 255).astype(np.uint8)
    return np.stack([gray, gray // 2, 255 - gray, np.full_like(gray, 255)], axis=-1), mask


def two_channels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (2, 64, 64) image: disks in channel 0, noise in channel 1."""
    image, mask = disks(seed, (64, 64))
    noise = np.random.default_rng(seed).integers(0, 500, image.shape).astype(np.uint16)
    return np.stack([image, noise]), mask


def prepare(inputs, **options) -> RunPlan:
    """``prepare_run`` with 32² patches (unless ``settings`` are given): the images here are small."""
    return prepare_run(inputs, **{"settings": {"patch_size": 32}, **options})


def masks(*pairs) -> list[LabeledInput]:
    return [LabeledInput(image, mask, f"image {i}") for i, (image, mask) in enumerate(pairs)]


def test_a_new_model_takes_the_engine_defaults_and_holds_out_a_fifth():
    big = (256, 256)  # the default patch size
    plan = prepare_run(masks(disks(0, big), disks(1, big)), kind=LabelKind.CLASS_INDEX, architecture=NEW)
    assert plan.config == TrainConfig() and plan.config.batch_size == 8  # the engine's, in every face
    assert plan.init is None and not plan.continuing and plan.warnings == ()
    config = plan.info.config
    assert (config.num_classes, config.in_channels, config.width, config.depth) == (2, 1, 4, 2)
    assert plan.info.class_names == ["class 0", "class 1"] and plan.normalization == Normalization()
    train, val = plan.labeled_pixels
    assert val / (train + val) == pytest.approx(DEFAULT_VAL_FRACTION, abs=0.05)  # held out, in blocks
    assert [item.name for item in plan.train] == ["image 0", "image 1"]
    paper = prepare_run(masks(disks(0, big)), kind=LabelKind.CLASS_INDEX, architecture="paper", validation=0)
    assert all(getattr(paper.info.config, key) == value for key, value in PAPER.items())
    assert paper.val is None and isinstance(paper, RunPlan)
    with pytest.raises(SettingsError, match="unknown architecture 'nope'"):
        prepare_run(masks(disks(0)), kind=LabelKind.CLASS_INDEX, architecture="nope")


def test_the_plan_runs_as_planned():
    plan = prepare_run(
        masks(disks(0)), kind=LabelKind.CLASS_INDEX, architecture=NEW, settings=SMALL, validation=0, name="x"
    )
    result = drive(plan.train_iter())
    training = result.model.info.training
    assert result.model.info.name == "x" and result.epochs_run == 1
    assert (training["patch_size"], training["batch_size"], training["val_labeled_pixels"]) == (32, 8, 0)


def test_fine_tuning_into_another_class_count(trained_checkpoint):
    init = load_checkpoint(trained_checkpoint)
    image, mask = disks(5, (64, 64))
    painted = mask.astype(np.uint8) + 1
    painted[:8] = 3  # a third class
    plan = prepare_run(
        [LabeledInput(image, painted, "cells")],
        kind=LabelKind.PAINTED,
        init=init,
        num_classes=3,
        class_names=["background", "colony", "debris"],
        settings={**SMALL, "steps_per_epoch": 2},
    )
    info = plan.info
    assert info.config.num_classes == 3 and info.class_names == ["background", "colony", "debris"]
    assert {k: v for k, v in info.config.to_dict().items() if k != "num_classes"} == {
        k: v for k, v in init.info.config.to_dict().items() if k != "num_classes"
    }  # the fine-tune rule: the architecture of the model it starts from
    assert plan.val is None  # no strokes held out when fine-tuning
    assert plan.config == training_settings(True, **{**SMALL, "steps_per_epoch": 2})  # fine-tuning settings
    assert plan.config.adapt_norm and plan.config.fit_heads is FINE_TUNE_DEFAULTS["fit_heads"]
    assert plan.config.learning_rate == FINE_TUNE_DEFAULTS["learning_rate"]
    training = drive(plan.train_iter()).model.info.training
    assert training["fine_tuned_from"] == "tiny trained" and training["weights_copied"] > 0
    assert training["head_fit_loss"] is not None  # the fresh heads were fitted first
    # the class count by default: the largest class labeled + 1, names ``class k``
    three = prepare([LabeledInput(image, painted, "cells")], kind=LabelKind.PAINTED, init=init)
    assert three.info.class_names == ["class 0", "class 1", "class 2"]
    same = prepare([LabeledInput(image, mask, "cells")], kind=LabelKind.CLASS_INDEX, init=init)
    assert same.info.class_names == init.info.class_names  # the same count keeps the names


def test_multi_channel_and_rgba_training():
    image, mask = rgba()
    plan = prepare(masks((image, mask)), kind=LabelKind.CLASS_INDEX, architecture=NEW, validation=0)
    assert plan.info.config.in_channels == 3 and plan.train[0].image.shape == (3, 64, 64)  # alpha dropped
    two, mask2 = two_channels()
    plan = prepare(
        masks((two, mask2)), kind=LabelKind.CLASS_INDEX, architecture=NEW, channel_axis=0, validation=0
    )
    assert plan.info.config.in_channels == 2 and plan.train[0].image.shape == (2, 64, 64)
    np.testing.assert_allclose(plan.train[0].image, normalize_channels(two, Normalization()))


def test_rgb_on_a_grayscale_model_trains_on_its_mean(tiny_checkpoint):
    init = load_checkpoint(tiny_checkpoint)
    image, mask = rgba(3)
    rgb = image[..., :3]
    plan = prepare([LabeledInput(rgb, mask, "rgb", rgb=True)], kind=LabelKind.CLASS_INDEX, init=init)
    assert plan.info.config.in_channels == 1 and plan.train[0].image.shape == (1, 64, 64)
    mean = normalize_channels(rgb.mean(axis=-1, dtype=np.float32)[None], init.info.normalization)
    np.testing.assert_allclose(plan.train[0].image, mean, rtol=1e-6)


def test_validation_inputs_corrections_and_errors():
    (image, mask), (val_image, val_mask) = disks(2), disks(3)
    plan = prepare(
        masks((image, mask)),
        kind=LabelKind.CLASS_INDEX,
        architecture=NEW,
        validation=masks((val_image, val_mask)),
    )
    assert len(plan.val) == 1 and plan.labeled_pixels == (mask.size, val_mask.size)
    painted = mask.astype(np.uint8) + 1
    predicted = painted.copy()
    predicted[:4] = 2  # the user corrected these pixels back to background
    plan = prepare(
        [LabeledInput(image, painted, "seg", predicted=predicted)], kind=LabelKind.PAINTED, architecture=NEW
    )
    weights = np.concatenate([item.weight[item.target >= 0] for item in plan.train])
    assert set(np.unique(weights)) == {1.0, CORRECTION_WEIGHT}
    read = []

    def lazily():  # a face reading one file at a time: the plan reads each input once
        for pair in (disks(0), disks(1)):
            read.append(pair)
            yield LabeledInput(*pair)

    assert len(prepare(lazily(), kind=LabelKind.CLASS_INDEX, architecture=NEW, validation=0).train) == 2
    assert len(read) == 2
    for validation, message in (
        (1.0, r"validation fraction must be in \[0, 1\)"),
        ([], "no validation images"),
    ):
        with pytest.raises(CellprepError, match=message):
            prepare(masks(disks(0)), kind=LabelKind.CLASS_INDEX, architecture=NEW, validation=validation)
    with pytest.raises(TrainingDataError, match="no training images"):
        prepare_run([], kind=LabelKind.CLASS_INDEX)
    with pytest.raises(TrainingDataError, match="smaller than the patch size 128"):  # checked before a thread
        prepare_run(masks(disks(0, (64, 64))), kind=LabelKind.CLASS_INDEX, settings={"patch_size": 128})
    with pytest.raises(SettingsError, match="3 class names given for 2 classes"):
        prepare(masks(disks(0)), kind=LabelKind.CLASS_INDEX, class_names=["a", "b", "c"])
    with pytest.raises(TrainingDataError, match="class 2 has no labeled pixel"):
        prepare(masks(disks(0)), kind=LabelKind.CLASS_INDEX, num_classes=3)


def test_settings_the_run_cannot_use_are_warned_about(tiny_checkpoint, monkeypatch):
    from napari_cellprep.engine import devices

    init = load_checkpoint(tiny_checkpoint)
    val = masks(disks(3))
    plan = prepare_run(
        masks(disks(2)),
        kind=LabelKind.CLASS_INDEX,
        init=init,
        validation=val,
        settings={"select_on_strokes": True, "fit_heads": True, "adapt_norm": True, "patch_size": 32},
    )
    assert [w.split(" ")[0] for w in plan.warnings] == ["select_on_strokes", "fit_heads"]
    assert "the class count stays the same" in plan.warnings[1]
    grouped = prepare_run(
        masks(disks(2)),
        kind=LabelKind.CLASS_INDEX,
        architecture={**NEW, "norm": "group"},
        settings={"fit_heads": True, "refresh_norm": True, "patch_size": 32},
    )
    assert grouped.warnings == (
        "fit_heads does nothing when training a new model: it fits the heads fine-tuning leaves fresh",
        "refresh_norm: the model has no BatchNorm statistics to re-estimate (norm 'group')",
    )
    monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda: False)
    emulated = prepare(
        masks(disks(2)), kind=LabelKind.CLASS_INDEX, init=init, settings={"cpu_bfloat16": True, "patch_size": 32}
    )
    assert emulated.warnings == (
        (
            "cpu_bfloat16 does nothing on cpu (1 thread): it needs a CPU that computes bfloat16 in hardware "
            "(AMX or AVX512-BF16)"
        ),
    )
    # the engine's own defaults are never warned about (fine-tuning turns fit_heads and cpu_bfloat16 on)
    assert prepare(masks(disks(2)), kind=LabelKind.CLASS_INDEX, init=init).warnings == ()


def test_a_further_round_of_fine_tuning_takes_the_continue_rule_and_what_is_given_wins():
    def loaded(training):  # what the rule reads of a LoadedModel: its training record
        return SimpleNamespace(info=SimpleNamespace(training=training))

    rng = np.random.default_rng(0)
    same, other = (
        LabeledImage(rng.random((1, 40, 50), dtype=np.float32), np.zeros((40, 50), np.int64)) for _ in "ab"
    )
    relabeled = LabeledImage(same.image.copy(), np.ones((40, 50), np.int64))  # the same image, new strokes
    tuned = loaded({"fine_tuned_from": "default", "image_digests": [same.digest()]})
    assert continues_fine_tuning(tuned, [relabeled]) and continues_fine_tuning(tuned, [other, relabeled])
    assert not continues_fine_tuning(tuned, [other])  # a fine-tuned model on a new image: a first round
    assert not continues_fine_tuning(
        loaded({"fine_tuned_from": None, "image_digests": [same.digest()]}), [same]
    )
    assert not continues_fine_tuning(
        loaded({"fine_tuned_from": "default"}), [same]
    )  # recorded before digests
    assert not continues_fine_tuning(None, [same])
    once, again = training_settings(True), training_settings(True, continuing=True)
    assert once.average_weights == 0 and once.select_on_strokes  # the selection: every round
    assert {key: getattr(again, key) for key in CONTINUE_DEFAULTS} == CONTINUE_DEFAULTS
    assert again.learning_rate == once.learning_rate == FINE_TUNE_DEFAULTS["learning_rate"]
    assert training_settings(True, continuing=True, average_weights=0.5).average_weights == 0.5
    assert training_settings(False, continuing=True) == TrainConfig()  # a new model has nothing to continue


def test_a_model_fine_tuned_on_the_same_image_continues(tiny_checkpoint):
    init = load_checkpoint(tiny_checkpoint)
    image, mask = disks(4)
    first = prepare_run([LabeledInput(image, mask)], kind=LabelKind.CLASS_INDEX, init=init, settings=SMALL)
    assert not first.continuing and first.config.average_weights == 0
    tuned = drive(first.train_iter()).model
    again = prepare_run([LabeledInput(image, mask)], kind=LabelKind.CLASS_INDEX, init=tuned, settings=SMALL)
    assert again.continuing and again.config.average_weights == CONTINUE_DEFAULTS["average_weights"]
