"""The command line runs the interactive loop (issue #9 §5): painted label files, the reserved
model name ``default``, a wall-clock budget, and the engine's fine-tuning settings."""

import shutil
import time

import numpy as np
import pytest

from napari_cellprep.engine.checkpoint import default_checkpoint_path, load_checkpoint, read_info
from napari_cellprep.engine.images.io import read_image, write_image
from napari_cellprep.engine.training.plan import training_settings
from tests.cli.test_cli import assert_one_line_error, run
from tests.conftest import disks

FAST = "--epochs 1 --steps-per-epoch 1 --patch-size 32 --batch-size 2 --device cpu".split()
NEW = ["--width", "4", "--depth", "2"]


@pytest.fixture
def scribbles(tmp_path):
    """Two 64² images with sparse painted labels (0 = not annotated, 1 = background, 2 = colony)."""
    files = []
    for k in range(2):
        image, mask = disks(20 + k, (64, 64))
        painted = np.zeros((64, 64), np.uint8)
        painted[::4] = mask[::4] + 1
        write_image(tmp_path / f"img{k}.tif", image)
        write_image(tmp_path / f"img{k}_labels.png", painted)
        files.append((tmp_path / f"img{k}.tif", tmp_path / f"img{k}_labels.png", painted))
    return files


def test_painted_label_files_train_as_the_dock_reads_layers(scribbles, tmp_path):
    (image0, labels0, painted0), (image1, labels1, painted1) = scribbles
    out = tmp_path / "painted.cellprep"
    validation = ["--val-images", tmp_path / "val_images", "--val-masks", tmp_path / "val_labels"]
    (tmp_path / "val_images").mkdir()
    (tmp_path / "val_labels").mkdir()
    shutil.copy(image1, tmp_path / "val_images" / "img1.tif")
    shutil.copy(labels1, tmp_path / "val_labels" / "img1.png")
    code, stdout, err = run(
        "train", "--pair", image0, labels0, "--painted", "--out", out, *validation, *FAST, *NEW
    )
    assert code == 0, err
    training = read_info(out).training
    assert read_info(out).config.num_classes == 2  # values 1, 2: classes 0, 1
    assert training["train_labeled_pixels"] == np.count_nonzero(painted0)  # 0 = not annotated
    assert training["val_labeled_pixels"] == np.count_nonzero(painted1)  # validation files painted too
    # without --painted the same files are class indices: 0 is a class, 2 one too many
    result = run(
        "train", "--pair", image0, labels0, "--out", tmp_path / "x.cellprep", *FAST, *NEW, "--classes", "2"
    )
    assert_one_line_error(result, "mask value 2 is not a class")


def test_evaluate_reads_painted_files_too(scribbles, trained_checkpoint):
    image, labels, painted = scribbles[0]
    import json

    code, stdout, err = run(
        "evaluate", "--model", trained_checkpoint, "--pair", image, labels, "--painted", "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["pixels"] == np.count_nonzero(painted)


def test_default_is_the_bundled_model_wherever_a_model_is_asked_for(
    scribbles, tmp_path, tiny_checkpoint, monkeypatch
):
    if not default_checkpoint_path().is_file():
        pytest.skip("no bundled default model in this installation")
    image, labels, _ = scribbles[0]
    monkeypatch.chdir(tmp_path)
    shutil.copy(tiny_checkpoint, tmp_path / "default")  # a file named default: ./default
    bundled = load_checkpoint(default_checkpoint_path()).label
    for name, expected, folder in (
        ("default", bundled, "predict-default"),
        ("./default", "tiny", "predict-file"),
    ):
        out = tmp_path / folder
        code, stdout, err = run("predict", image, "--model", name, "--out", out, "--device", "cpu")
        assert code == 0 and f"model {expected} on" in stdout, err
    code, _, _ = run("predict", image, "--out", tmp_path / "predict-none", "--device", "cpu")
    np.testing.assert_array_equal(
        read_image(tmp_path / "predict-none" / "img0_labels.tif"),
        read_image(tmp_path / "predict-default" / "img0_labels.tif"),
    )
    out = tmp_path / "tuned.cellprep"
    code, _, err = run(
        "train", "--pair", image, labels, "--painted", "--init", "default", "--out", out, *FAST
    )
    assert code == 0, err
    training = read_info(out).training
    assert (
        training["fine_tuned_from"] == bundled
        and read_info(out).config == load_checkpoint(default_checkpoint_path()).info.config
    )
    # the same fine-tuning settings as the Train dock: the engine's
    defaults = training_settings(True)
    assert (training["learning_rate"], training["lr_schedule"], training["augment"], training["adapt_norm"]) == (
        defaults.learning_rate,
        defaults.lr_schedule,
        defaults.augment,
        defaults.adapt_norm,
    )


def test_a_time_budget_is_a_normal_end_that_keeps_the_best_model(scribbles, tmp_path):
    image, labels, _ = scribbles[0]
    out = tmp_path / "budget.cellprep"
    options = [
        "--epochs",
        "100000",
        "--steps-per-epoch",
        "4",
        "--patch-size",
        "32",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    start = time.perf_counter()
    code, stdout, err = run(
        "train", "--pair", image, labels, "--painted", "--out", out, "--seconds", "2", *options, *NEW
    )
    assert code == 0, err
    assert time.perf_counter() - start < 30
    assert "time budget of 2 s spent after" in stdout and f"saved {out}" in stdout
    training = read_info(out).training
    assert training["out_of_time"] and not training["stopped"] and 1 <= training["epochs_run"] < 100000
    assert training["best_epoch"] is not None
    assert_one_line_error(
        run("train", "--pair", image, labels, "--painted", "--out", out, "--overwrite", "--seconds", "0"),
        "time budget must be positive",
    )


def test_a_further_round_continues_by_the_engines_rule_and_flags_override_it(scribbles, tmp_path):
    image, labels, _ = scribbles[0]
    first, second, plain = tmp_path / "first.cellprep", tmp_path / "second.cellprep", tmp_path / "plain.cellprep"
    common = ["--pair", image, labels, "--painted", "--no-classifier", *FAST]  # the network's own rule
    assert run("train", *common, "--init", "default", "--out", first)[0] == 0
    assert run("train", *common, "--init", first, "--out", second)[0] == 0
    code, _, err = run(
        "train", *common, "--init", first, "--out", plain, "--average-weights", "0", "--no-select-on-strokes"
    )
    assert code == 0, err
    once, again, overridden = (read_info(path).training for path in (first, second, plain))
    assert once["average_weights"] == 0 and once["select_on_strokes"]  # the bundled model was trained afresh
    continuing = training_settings(True, continuing=True)
    assert again["fine_tuned_from"] and again["fine_tuned_from"] != once["fine_tuned_from"]
    assert (again["average_weights"], again["select_on_strokes"]) == (
        continuing.average_weights,
        continuing.select_on_strokes,
    ) != (0, False)
    assert (overridden["average_weights"], overridden["select_on_strokes"]) == (0, False)
    elsewhere = tmp_path / "elsewhere.cellprep"  # the fine-tuned model on another image: a first round
    other_image, other_labels, _ = scribbles[1]
    assert run("train", "--pair", other_image, other_labels, "--painted", "--no-classifier", *FAST, "--init", first,
               "--out", elsewhere)[0] == 0
    assert read_info(elsewhere).training["average_weights"] == 0 and read_info(elsewhere).training["select_on_strokes"]


def test_painted_strokes_train_two_speeds_within_the_budget(scribbles, tmp_path):
    """--painted: the pixel classifier first, then the network past it; the model file carries the
    classifier at the weight its held-out strokes chose. --no-classifier trains the network alone."""
    image, labels, painted = scribbles[0]
    out = tmp_path / "two.cellprep"
    code, stdout, err = run("train", "--pair", image, labels, "--painted", "--out", out, *FAST, *NEW)
    assert code == 0, err
    assert "pixel classifier fitted in" in stdout and "pixel classifier weight" in stdout
    loaded = load_checkpoint(out)
    assert loaded.classifier is not None and 0.0 <= loaded.classifier.weight <= 1.0
    training = loaded.info.training
    assert training["train_labeled_pixels"] + training["val_labeled_pixels"] == np.count_nonzero(painted)
    assert training["pseudo_labeled_pixels"] > training["train_labeled_pixels"]  # the classifier's pixels too
    assert training["classifier"]["weight"] == loaded.classifier.weight
    alone = tmp_path / "alone.cellprep"
    code, stdout, err = run("train", "--pair", image, labels, "--painted", "--no-classifier", "--out", alone,
                            *FAST, *NEW)
    assert code == 0, err and "pixel classifier" not in stdout
    assert load_checkpoint(alone).classifier is None
