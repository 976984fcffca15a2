"""The same input behaves the same in the CLI and in the docks (issue #8): default settings,
fine-tuning into another class count, multi-channel and RGBA training, RGB on a grayscale model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cellprep.engine.checkpoint import load_checkpoint, read_info
from napari_cellprep.engine.images.io import read_image, write_image
from napari_cellprep.engine.prediction.inference import predict
from napari_cellprep.engine.training.plan import FINE_TUNE_DEFAULTS, TrainConfig, training_settings
from tests.cli.test_cli import run
from tests.conftest import disks

FAST = (
    "--epochs 1 --steps-per-epoch 1 --patch-size 32 --width 4 --depth 2 --device cpu --val-fraction 0".split()
)
PLUGIN = "napari-cellprep"


def rgba(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 64² RGBA uint8 image of bright disks (alpha opaque) and its 0/1 mask."""
    image, mask = disks(seed, (64, 64))
    gray = (image / image.max() * 255).astype(np.uint8)
    return np.stack([gray, gray // 2, 255 - gray, np.full_like(gray, 255)], axis=-1), mask


def rgb(seed: int = 0) -> np.ndarray:
    """A 64² RGB uint8 image of bright disks, slightly tinted."""
    gray = rgba(seed)[0][..., 0]
    return np.stack([gray, gray, (gray * 0.8).astype(np.uint8)], axis=-1)


def two_channels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (2, 64, 64) image: disks in channel 0, noise in channel 1."""
    image, mask = disks(seed, (64, 64))
    return np.stack(
        [image, np.random.default_rng(seed).integers(0, 500, image.shape).astype(np.uint16)]
    ), mask


@pytest.fixture
def viewer_with_docks(request, registry):
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    make_napari_viewer = request.getfixturevalue("make_napari_viewer")

    def make(*layers):
        viewer = make_napari_viewer()
        for kind, data, name, options in layers:
            getattr(viewer, f"add_{kind}")(data, name=name, **options)
        _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
        _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
        return viewer, segment, train

    return make


def train_in_dock(
    qtbot, widget, image, labels, *, new=True, classes=2, names="background, colony", axis=None
):
    from napari_cellprep._widgets import train_widget

    widget._image.value, widget._labels.value = image, labels
    widget._start.value = train_widget.Start.NEW if new else train_widget.Start.FINE_TUNE
    widget._classes.value, widget._names.value = classes, names
    widget._width.value, widget._depth.value = 4, 2
    widget._channel_axis.reset_choices()
    widget._channel_axis.value = axis
    widget._epochs.value, widget._steps.value, widget._patch.value = 1, 1, 32
    widget._validation.value = train_widget.Validation.NONE
    widget.train()
    assert widget.controls.worker is not None, widget.controls.status.value
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=60_000)
    assert widget.controls.status.value.startswith("Finished"), widget.controls.status.value
    return widget.trained.loaded


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_defaults_and_image_layouts(tmp_path):
    """Default batch size from the engine; RGBA trains a 3-channel model; --channel-axis a
    2-channel one; an RGB image on a grayscale model is predicted as its mean."""
    image, mask = rgba()
    write_image(tmp_path / "rgba" / "images" / "a.png", image)
    write_image(tmp_path / "rgba" / "masks" / "a.png", mask)
    out = tmp_path / "rgba.cellprep"
    code, _, err = run(
        "train",
        "--images",
        tmp_path / "rgba" / "images",
        "--masks",
        tmp_path / "rgba" / "masks",
        "--out",
        out,
        *FAST,
    )
    assert code == 0, err
    info = read_info(out)
    assert info.config.in_channels == 3
    assert info.training["batch_size"] == TrainConfig().batch_size == 8

    image2, mask2 = two_channels()
    write_image(tmp_path / "two.tif", image2)
    write_image(tmp_path / "two_mask.png", mask2)
    out2 = tmp_path / "two.cellprep"
    code, _, err = run(
        "train",
        "--pair",
        tmp_path / "two.tif",
        tmp_path / "two_mask.png",
        "--out",
        out2,
        "--channel-axis",
        "0",
        *FAST,
    )
    assert code == 0, err
    assert read_info(out2).config.in_channels == 2


def test_cli_predicts_rgb_with_a_grayscale_model_as_its_mean(tmp_path, trained_checkpoint):
    image = rgb(3)
    write_image(tmp_path / "rgb.png", image)
    code, _, err = run(
        "predict", tmp_path / "rgb.png", "--model", trained_checkpoint, "--out", tmp_path / "out"
    )
    assert code == 0, err
    written = read_image(tmp_path / "out" / "rgb_labels.tif")
    expected = predict(load_checkpoint(trained_checkpoint), image.mean(axis=-1, dtype=np.float32))
    np.testing.assert_array_equal(written, expected.labels)
    assert 0 < written.mean() < 1  # both classes found


def test_cli_fine_tunes_into_another_class_count(tmp_path, trained_checkpoint):
    image, mask = disks(5, (64, 64))
    three = mask.astype(np.uint8)
    three[:8] = 2  # a third class
    write_image(tmp_path / "x.tif", image)
    write_image(tmp_path / "x.png", three)
    out = tmp_path / "three.cellprep"
    options = [a for a in FAST if a not in ("--width", "4", "--depth", "2", "--val-fraction", "0")]
    code, _, err = run(
        "train",
        "--pair",
        tmp_path / "x.tif",
        tmp_path / "x.png",
        "--out",
        out,
        "--init",
        trained_checkpoint,
        *options,
    )
    assert code == 0, err
    info = read_info(out)
    assert info.config.num_classes == 3 and info.class_names == ["class 0", "class 1", "class 2"]
    assert info.training["learning_rate"] == FINE_TUNE_DEFAULTS["learning_rate"]  # --init: fine-tune settings
    assert info.training["val_labeled_pixels"] == 0  # no strokes held out when fine-tuning
    assert info.training["fine_tuned_from"] == "tiny trained" and info.training["weights_copied"] > 0


# --- the docks --------------------------------------------------------------------------------


@pytest.mark.napari
def test_dock_defaults_and_image_layouts(viewer_with_docks, qtbot):
    image, mask = rgba()
    image2, mask2 = two_channels()
    viewer, _, train = viewer_with_docks(
        ("image", image, "rgba", {"rgb": True}),
        ("labels", mask.astype(np.uint8) + 1, "rgba labels", {}),
        ("image", image2, "two", {}),
        ("labels", mask2.astype(np.uint8) + 1, "two labels", {}),
    )
    assert train._batch.value == TrainConfig().batch_size == 8
    model = train_in_dock(qtbot, train, viewer.layers["rgba"], viewer.layers["rgba labels"])
    assert model.info.config.in_channels == 3
    assert model.info.training["batch_size"] == 8
    two = train_in_dock(qtbot, train, viewer.layers["two"], viewer.layers["two labels"], axis=0)
    assert two.info.config.in_channels == 2


@pytest.mark.napari
def test_dock_segments_rgb_with_a_grayscale_model_as_its_mean(
    viewer_with_docks, qtbot, registry, trained_checkpoint
):
    image = rgb(3)
    viewer, segment, _ = viewer_with_docks(("image", image, "rgb", {"rgb": True}))
    segment.select_model(registry.add_file(trained_checkpoint))
    segment.run()
    qtbot.waitUntil(lambda: segment.controls.worker is None, timeout=30_000)
    ensemble = viewer.layers["rgb | ensemble"]
    expected = predict(load_checkpoint(trained_checkpoint), image.mean(axis=-1, dtype=np.float32))
    np.testing.assert_array_equal(ensemble.data, expected.labels + 1)  # layers hold class + 1
    assert 1 < ensemble.data.mean() < 2  # both classes found


@pytest.mark.napari
def test_dock_fine_tunes_into_another_class_count(viewer_with_docks, qtbot, registry, trained_checkpoint):
    image, mask = disks(5, (64, 64))
    painted = mask.astype(np.uint8) + 1
    painted[:8] = 3  # a third class
    registry.add_file(trained_checkpoint)
    viewer, _, train = viewer_with_docks(("image", image, "cells", {}), ("labels", painted, "scribbles", {}))
    assert train._classes.value == 2 and train._names.value == "background, colony"  # the base's
    model = train_in_dock(
        qtbot,
        train,
        viewer.layers["cells"],
        viewer.layers["scribbles"],
        new=False,
        classes=3,
        names="background, colony, debris",
    )
    assert model.info.config.num_classes == 3 and model.info.class_names == ["background", "colony", "debris"]
    assert (
        model.info.training["fine_tuned_from"] == "tiny trained" and model.info.training["weights_copied"] > 0
    )
    defaults = training_settings(True)  # the same fine-tuning settings as cellprep train --init
    training = model.info.training
    shown = ("learning_rate", "fresh_learning_rate", "batch_size", "lr_schedule", "adapt_norm", "refresh_norm",
             "fit_heads", "freeze_norm")  # adapt_norm, refresh_norm, fit_heads, fresh rate: not in the form
    assert [training[k] for k in shown] == [getattr(defaults, k) for k in shown]
    assert defaults.adapt_norm is True and defaults.learning_rate == FINE_TUNE_DEFAULTS["learning_rate"]
    assert defaults.fit_heads is FINE_TUNE_DEFAULTS["fit_heads"] is not TrainConfig().fit_heads


def test_a_further_round_of_fine_tuning_takes_the_continue_rule_and_what_is_given_wins():
    from types import SimpleNamespace

    from napari_cellprep.engine.training.data import LabeledImage
    from napari_cellprep.engine.training.plan import CONTINUE_DEFAULTS, continues_fine_tuning

    def loaded(training):  # what the rule reads of a LoadedModel: its training record
        return SimpleNamespace(info=SimpleNamespace(training=training))

    rng = np.random.default_rng(0)
    same, other = (LabeledImage(rng.random((1, 40, 50), dtype=np.float32), np.zeros((40, 50), np.int64)) for _ in "ab")
    relabeled = LabeledImage(same.image.copy(), np.ones((40, 50), np.int64))  # the same image, new strokes
    tuned = loaded({"fine_tuned_from": "default", "image_digests": [same.digest()]})
    assert continues_fine_tuning(tuned, [relabeled]) and continues_fine_tuning(tuned, [other, relabeled])
    assert not continues_fine_tuning(tuned, [other])  # a fine-tuned model on a new image: a first round
    assert not continues_fine_tuning(loaded({"fine_tuned_from": None, "image_digests": [same.digest()]}), [same])
    assert not continues_fine_tuning(loaded({"fine_tuned_from": "default"}), [same])  # recorded before digests
    assert not continues_fine_tuning(None, [same])
    once, again = training_settings(True), training_settings(True, continuing=True)
    assert once.average_weights == 0 and once.select_on_strokes  # the selection: every round
    assert {key: getattr(again, key) for key in CONTINUE_DEFAULTS} == CONTINUE_DEFAULTS
    assert again.learning_rate == once.learning_rate == FINE_TUNE_DEFAULTS["learning_rate"]
    assert training_settings(True, continuing=True, average_weights=0.5).average_weights == 0.5
    assert training_settings(False, continuing=True) == TrainConfig()  # a new model has nothing to continue
