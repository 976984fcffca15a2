"""The ``cellprep`` command, run in-process through ``main``: real training, evaluation and
prediction on NIST tiles (skipped without the data), clear one-line errors, Ctrl-C, the demo."""

from __future__ import annotations

import contextlib
import io as stdio
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_cellprep import cli
from napari_cellprep.cli import demo as demo_verb
from napari_cellprep.cli import predict as predict_verb
from napari_cellprep.engine import checkpoint
from napari_cellprep.engine.checkpoint import ModelInfo, load_checkpoint, read_info
from napari_cellprep.engine.events import EpochEnd, StepEnd
from napari_cellprep.engine.export import panel as demo
from napari_cellprep.engine.images.io import read_image, read_mask, sample_paths, write_image
from napari_cellprep.engine.prediction.inference import OUTPUTS, predict
from napari_cellprep.engine.training import recipe
from napari_cellprep.model import PAPER, ModelConfig, build_model
from tests.conftest import disks, rgb_disks

TINY = "--width 4 --depth 2 --batch-size 2 --patch-size 64 --device cpu".split()


def run(*argv: str) -> tuple[int, str, str]:
    """``cellprep argv`` in-process: (exit status, stdout, stderr)."""
    out, err = stdio.StringIO(), stdio.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, _, err = result
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cellprep: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- data -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nist(data_root, tmp_path_factory) -> dict[str, Path]:
    """Four NIST phase-contrast tiles (256² uint16) with masks for training, one for validation."""
    base = tmp_path_factory.mktemp("nist")
    tiles = sorted((data_root / "nist-phase" / "images").glob("*.tif"))[:5]
    folders = {}
    for role, paths in (("train", tiles[:4]), ("val", tiles[4:])):
        for kind in ("images", "masks"):
            folders[f"{role}_{kind}"] = base / role / kind
            folders[f"{role}_{kind}"].mkdir(parents=True)
        for path in paths:
            shutil.copy(path, folders[f"{role}_images"])
            shutil.copy(data_root / "nist-phase" / "masks" / f"{path.stem}.png", folders[f"{role}_masks"])
    return folders


@pytest.fixture(scope="module")
def nist_model(nist, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("model") / "nist.cellprep"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_torch_thread does, for this module-scoped fixture
    try:
        folders = ["--images", nist["train_images"], "--masks", nist["train_masks"], "--out", out]
        validation = ["--val-images", nist["val_images"], "--val-masks", nist["val_masks"]]
        options = "--epochs 2 --steps-per-epoch 2 --class-names background colony".split()
        result = run("train", *folders, *validation, *TINY, *options)
    finally:
        torch.set_num_threads(threads)
    assert result[0] == 0, result
    return out, result[1]


@pytest.fixture
def synthetic(tmp_path) -> tuple[Path, Path]:
    """Three 64² uint16 images of bright disks (class 1) and their PNG masks."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for k in range(3):
        image, mask = disks(k, (64, 64))
        write_image(images / f"cell{k}.tif", image)
        write_image(masks / f"cell{k}.png", mask)
    return images, masks


# --- the required end-to-end run on real data ---------------------------------------------------


def test_train_reports_progress_and_writes_a_checkpoint(nist_model):
    path, stdout = nist_model
    assert "epoch 1/2  loss" in stdout and "epoch 2/2  loss" in stdout
    assert "val mIoU" in stdout and f"saved {path}" in stdout
    info = read_info(path)
    assert info.class_names == ["background", "colony"]
    assert (info.config.width, info.config.depth, info.config.num_classes) == (4, 2, 2)
    assert info.training["epochs_run"] == 2 and info.training["stopped"] is False
    assert info.training["patch_size"] == 64
    assert info.training["val_labeled_pixels"] == 256 * 256  # the whole validation tile


def test_evaluate_and_predict_agree_on_real_tiles(nist, nist_model, tmp_path):
    images, masks = nist["train_images"], nist["train_masks"]
    model, _ = nist_model
    code, stdout, _ = run("evaluate", "--model", model, "--images", images, "--masks", masks, "--json")
    assert code == 0
    report = json.loads(stdout)
    assert [c["name"] for c in report["classes"]] == ["background", "colony"]
    for c in report["classes"]:
        assert 0.0 <= c["iou"] <= 1.0 and 0.0 <= c["dice"] <= 1.0
    truth = [read_mask(p) for p in sorted(masks.iterdir())]
    assert [c["true_pixels"] for c in report["classes"]] == [
        sum(int((m == k).sum()) for m in truth) for k in (0, 1)
    ]
    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == report["pixels"] == 4 * 256 * 256
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    np.testing.assert_allclose([c["iou"] for c in report["classes"]], iou)
    assert report["miou"] == pytest.approx(iou.mean())

    out = tmp_path / "labels"
    code, stdout, _ = run("predict", images, "--model", model, "--out", out, "--device", "cpu")
    assert code == 0 and "cpu" in stdout
    written = sorted(out.iterdir())
    assert [p.name for p in written] == [f"{p.stem}_labels.tif" for p in sorted(images.iterdir())]
    labels = [tifffile.imread(p) for p in written]
    for label in labels:
        assert label.shape == (256, 256) and label.dtype == np.uint8 and label.max() <= 1
    predicted = [sum(int((label == k).sum()) for label in labels) for k in (0, 1)]
    assert predicted == [c["predicted_pixels"] for c in report["classes"]]

    before = written[0].read_bytes()
    result = run("predict", images, "--model", model, "--out", out)
    assert_one_line_error(result, "already exists", "--overwrite")
    assert written[0].read_bytes() == before


# --- predict / evaluate / demo on synthetic images ---------------------------------------------


def test_predict_saves_every_intermediate(synthetic, tiny_checkpoint, tmp_path):
    images, _ = synthetic
    image_path = images / "cell0.tif"
    out = tmp_path / "out"
    code, _, _ = run("predict", image_path, "--model", tiny_checkpoint, "--out", out, "--save-intermediates")
    assert code == 0
    expected = predict(load_checkpoint(tiny_checkpoint), read_image(image_path), outputs=OUTPUTS)
    shapes = {
        "labels": (64, 64),
        "filters": (2, 64, 64),
        "translated": (2, 1, 64, 64),
        "probabilities": (2, 64, 64),
        "branch_probabilities": (3, 2, 64, 64),
        "disagreement": (64, 64),
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(f"cell0_{kind}.tif" for kind in shapes)
    for kind, shape in shapes.items():
        array = tifffile.imread(out / f"cell0_{kind}.tif")
        assert array.shape == shape, kind
        assert array.dtype == (np.uint8 if kind == "labels" else np.float32), kind
        np.testing.assert_array_equal(array, getattr(expected, kind), err_msg=kind)
    disagreement = tifffile.imread(out / "cell0_disagreement.tif")
    assert 0.0 <= disagreement.min() and disagreement.max() <= 1.0


def test_predict_segments_rgb_with_a_grayscale_model_as_its_mean(tmp_path, trained_checkpoint):
    image = rgb_disks(3)
    write_image(tmp_path / "rgb.png", image)
    code, _, err = run("predict", tmp_path / "rgb.png", "--model", trained_checkpoint, "--out", tmp_path / "out")
    assert code == 0, err
    written = read_image(tmp_path / "out" / "rgb_labels.tif")
    expected = predict(load_checkpoint(trained_checkpoint), image.mean(axis=-1, dtype=np.float32))
    np.testing.assert_array_equal(written, expected.labels)
    assert 0 < written.mean() < 1  # both classes found


def test_evaluate_table_matches_json(synthetic, tiny_checkpoint):
    images, masks = synthetic
    code, table, _ = run("evaluate", "--model", tiny_checkpoint, "--images", images, "--masks", masks)
    assert code == 0
    code, text, _ = run(
        "evaluate", "--model", tiny_checkpoint, "--images", images, "--masks", masks, "--json"
    )
    report = json.loads(text)
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:]}
    for c in report["classes"]:
        iou, dice, true_px, predicted_px = rows[c["name"]]
        assert float(iou) == pytest.approx(c["iou"], abs=5e-5) and float(dice) == pytest.approx(
            c["dice"], abs=5e-5
        )
        assert (int(true_px), int(predicted_px)) == (c["true_pixels"], c["predicted_pixels"])
    assert float(rows["mean"][0]) == pytest.approx(report["miou"], abs=5e-5)
    assert sum(c["true_pixels"] for c in report["classes"]) == 3 * 64 * 64


def test_demo_writes_one_panel_per_sample(tiny_checkpoint, tmp_path, monkeypatch):
    sample = tmp_path / "sample.tif"
    tifffile.imwrite(sample, disks(11, (64, 64))[0])
    monkeypatch.setattr(demo_verb, "sample_paths", lambda: [sample])
    out = tmp_path / "demo"
    code, stdout, _ = run("demo", "--model", tiny_checkpoint, "--out", out)
    panel = out / "sample_panel.png"
    assert code == 0 and f"wrote {panel}" in stdout
    assert [p.name for p in out.iterdir()] == ["sample_panel.png"]
    picture = read_image(panel)
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0] > 300  # a wide multi-panel figure
    assert_one_line_error(run("demo", "--model", tiny_checkpoint, "--out", out), "already exists")


def test_make_panel_for_a_plain_unet(tmp_path):
    config = ModelConfig(num_classes=3, architecture="unet", width=4, depth=2)
    loaded = checkpoint.LoadedModel(build_model(config).eval(), ModelInfo(config, ["a", "b", "c"]))
    image = disks(12, (64, 64))[0]
    prediction = predict(loaded, image, outputs=OUTPUTS)
    path = demo.make_panel(prediction, image, tmp_path / "panel.png", title="plain")
    assert read_image(path).ndim == 3
    with pytest.raises(FileExistsError):
        demo.make_panel(prediction, image, path)
    stack = predict(loaded, np.stack([image, image]), outputs=OUTPUTS)
    with pytest.raises(ValueError, match="one 2D image"):
        demo.make_panel(stack, image, tmp_path / "stack.png")


def test_packaged_samples_are_found():
    paths = sample_paths()
    assert paths and all(p.is_file() and p.suffix == ".tif" for p in paths)
    assert read_image(paths[0]).ndim == 2


# --- training on synthetic images: overwrite rules, fine-tuning, Ctrl-C ----------------------------


def _train_args(images: Path, masks: Path, out: Path, *extra, epochs: int = 1, steps: int = 1) -> list:
    schedule = f"--epochs {epochs} --steps-per-epoch {steps}".split()
    return ["train", "--images", images, "--masks", masks, "--out", out, *TINY, *schedule, *extra]


def test_train_overwrite_and_fine_tune(synthetic, tmp_path):
    images, masks = synthetic
    out = tmp_path / "model.cellprep"
    out.write_bytes(b"my precious model")
    assert_one_line_error(run(*_train_args(images, masks, out)), "already exists", "--overwrite")
    assert out.read_bytes() == b"my precious model"

    code, _, _ = run(
        *_train_args(images, masks, out, "--overwrite", "--val-fraction", "0", "--class-names", "bg", "disc")
    )
    assert code == 0
    assert read_info(out).class_names == ["bg", "disc"]
    assert read_info(out).training["val_labeled_pixels"] == 0

    tuned = tmp_path / "tuned.cellprep"
    assert_one_line_error(
        run(*_train_args(images, masks, tuned, "--init", out)), "width cannot be set when fine-tuning"
    )
    options = (
        "--name tuned --batch-size 2 --patch-size 64 --epochs 1 --steps-per-epoch 1 --device cpu".split()
    )
    code, _, _ = run("train", "--images", images, "--masks", masks, "--out", tuned, "--init", out, *options)
    assert code == 0
    info = read_info(tuned)
    assert (info.config.width, info.class_names, info.name) == (4, ["bg", "disc"], "tuned")
    assert info.training["fine_tuned_from"] == "model"


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_cleanly_and_keeps_the_best_model(synthetic, tmp_path, monkeypatch, presses):
    """One Ctrl-C ends training after the current step; a second one aborts at once. Either way
    the best model so far (here: epoch 1's) is in the checkpoint and there is no traceback."""
    images, masks = synthetic
    real_train_iter = recipe.train_iter
    seen = []

    def train_iter(*args, **kwargs):
        events = real_train_iter(*args, **kwargs)
        while True:
            try:
                event = next(events)
            except StopIteration as done:
                return done.value
            seen.append(event)
            if isinstance(event, StepEnd) and any(isinstance(e, EpochEnd) for e in seen):
                for _ in range(presses):
                    signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends
            yield event

    monkeypatch.setattr(recipe, "train_iter", train_iter)  # what the plan runs
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job
    out = tmp_path / "model.cellprep"
    code, stdout, err = run(*_train_args(images, masks, out, epochs=5, steps=2))
    assert code == cli.INTERRUPTED
    assert "stopping after the current step" in err and "Traceback" not in err
    assert sum(isinstance(e, EpochEnd) for e in seen) == 1
    info = read_info(out)
    assert info.training["epochs_run"] == 1
    load_checkpoint(out)
    if presses == 1:
        assert "stopped after 1 of 5 epoch(s)" in stdout and f"saved {out}" in stdout
        assert sum(isinstance(e, StepEnd) for e in seen) == 3  # the step during which Ctrl-C came ends
        assert info.training["stopped"] is True
    else:
        assert f"cellprep: aborted; {out} holds the best model so far" in err
    assert signal.getsignal(signal.SIGINT) is handler_before  # the CLI restored the handler


# --- errors: one clear line, exit status 1, no traceback ------------------------------------------


def _write_pair(folder: Path, image: np.ndarray, mask: np.ndarray) -> tuple[Path, Path]:
    write_image(folder / "images" / "x.tif", image)
    write_image(folder / "masks" / "x.png", mask)
    return folder / "images", folder / "masks"


def test_training_data_errors(synthetic, tmp_path):
    images, masks = synthetic
    out = tmp_path / "m.cellprep"
    image, mask = disks(13, (64, 64))
    cases = [
        (_train_args(images, tmp_path / "absent", out), ["no such mask folder"]),
        (_train_args(images, masks, tmp_path / "m.pt"), ["must end in .cellprep"]),
        (_train_args(images, masks, out, "--classes", "3"), ["class 2 has no labeled pixel"]),
        (_train_args(*_write_pair(tmp_path / "zero", image, 0 * mask), out), ["every label is class 0"]),
        (
            _train_args(*_write_pair(tmp_path / "b255", image, 255 * mask), out),
            ["254 classes (class 1, ..., class 254) have no labeled pixel", "0/255"],
        ),
        (_train_args(*_write_pair(tmp_path / "size", image, mask[:40]), out), ["x.tif", "(40, 64)"]),
        (_train_args(images, masks, out, "--class-names", "one"), ["1 class names given for 2 classes"]),
        (_train_args(images, masks, out, "--device", "cuda:7"), ["cuda:7"]),
        (
            _train_args(images, masks, out, "--init", masks / "cell0.png"),
            ["not a napari-cellprep checkpoint"],
        ),
    ]
    (tmp_path / "text" / "images").mkdir(parents=True)
    (tmp_path / "text" / "images" / "x.tif").write_text("not an image")
    write_image(tmp_path / "text" / "masks" / "x.png", mask)
    cases.append(
        (_train_args(tmp_path / "text" / "images", tmp_path / "text" / "masks", out), ["cannot be read"])
    )
    write_image(tmp_path / "two" / "masks" / "cell0.png", 2 * mask)
    validation = ["--val-images", images, "--val-masks", tmp_path / "two" / "masks"]
    cases.append((_train_args(images, masks, out, "--classes", "2", *validation), ["no mask in"]))
    for argv, fragments in cases:
        assert_one_line_error(run(*argv), *fragments)
    assert not out.exists()


def test_predict_refuses_an_image_given_twice_before_writing(synthetic, tiny_checkpoint, tmp_path):
    images, _ = synthetic
    out = tmp_path / "out"
    result = run("predict", images, images / "cell0.tif", "--model", tiny_checkpoint, "--out", out)
    assert_one_line_error(result, "collide")
    assert not out.exists() or not any(out.iterdir())  # no half run: nothing written


def test_predict_and_evaluate_errors(synthetic, tiny_checkpoint, tmp_path, monkeypatch):
    images, masks = synthetic
    notes = tmp_path / "notes.cellprep"
    notes.write_text("not a model")
    small = tmp_path / "small"
    write_image(small / "cell0.png", np.zeros((32, 32), np.uint8))
    wide = tmp_path / "wide"
    write_image(wide / "cell0.png", np.full((64, 64), 5, np.uint8))
    tiling = "--tile 8 --overlap 8".split()
    cases = [
        (
            ["predict", tmp_path / "absent.tif", "--model", tiny_checkpoint, "--out", tmp_path / "o"],
            ["no such file or folder"],
        ),
        (
            ["predict", images, "--model", notes, "--out", tmp_path / "o"],
            ["not a napari-cellprep checkpoint"],
        ),
        (["predict", images, "--model", tiny_checkpoint, "--out", tmp_path / "o", *tiling], ["overlap"]),
        (
            ["evaluate", "--model", tiny_checkpoint, "--pair", images / "cell0.tif", small / "cell0.png"],
            ["shape (32, 32)"],
        ),
        (
            ["evaluate", "--model", tiny_checkpoint, "--pair", images / "cell0.tif", wide / "cell0.png"],
            ["mask value 5 is not a class", "2 classes (values 0..1)"],
        ),
        (
            ["evaluate", "--model", tiny_checkpoint, "--images", images],
            ["both an image folder and a mask folder"],
        ),
    ]
    for argv, fragments in cases:
        assert_one_line_error(run(*argv), *fragments)
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(checkpoint, "default_checkpoint_path", lambda: tmp_path / "models" / "default.cellprep")
    for argv in (["predict", images, "--out", tmp_path / "o"], ["demo", "--out", tmp_path / "d"]):
        assert_one_line_error(run(*argv), "bundled default model is not installed", "give a model file")


def test_only_user_errors_become_one_line_and_bugs_keep_their_traceback(
    synthetic, tiny_checkpoint, tmp_path, monkeypatch
):
    images, _ = synthetic
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    result = run("predict", images, "--model", tiny_checkpoint, "--out", blocker / "labels")
    assert_one_line_error(result, "cannot write", "labels")

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(predict_verb, "predict", broken)
    with pytest.raises(ValueError, match="an internal bug"):  # not swallowed: Python prints the traceback
        run("predict", images, "--model", tiny_checkpoint, "--out", tmp_path / "out")


def test_help_and_usage_errors(capsys):
    for command in ("train", "predict", "evaluate", "demo"):
        assert cli.main([command, "--help"]) == 0
        assert f"usage: cellprep {command}" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("train", "predict", "evaluate", "demo"))
    assert cli.main(["train", "--images", "x"]) == 2  # --out is required
    assert "the following arguments are required: --out" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_and_predict_on_cuda(synthetic, tiny_checkpoint, tmp_path):
    images, masks = synthetic
    out = tmp_path / "gpu.cellprep"
    code, stdout, _ = run(
        *_train_args(images, masks, out, "--device", "cuda", epochs=2, steps=2)
    )  # last wins
    assert code == 0 and "cuda" in stdout
    assert read_info(out).training["device"].startswith("cuda")
    code, stdout, _ = run(
        "predict", images, "--model", tiny_checkpoint, "--out", tmp_path / "gpu", "--device", "cuda"
    )
    assert code == 0 and "cuda:0" in stdout
    code, _, _ = run(
        "predict", images, "--model", tiny_checkpoint, "--out", tmp_path / "cpu", "--device", "cpu"
    )
    for name in ("cell0_labels.tif", "cell1_labels.tif"):
        gpu, cpu = (tifffile.imread(tmp_path / side / name) for side in ("gpu", "cpu"))
        assert (gpu == cpu).mean() > 0.99


def test_demo_with_the_bundled_model_and_samples(tmp_path):
    """The README's main job: the shipped model on the shipped tiles, one panel each, with
    colonies drawn in the model's class colour (gold) in the label panels."""
    out = tmp_path / "demo"
    code, stdout, _ = run("demo", "--out", out)
    assert code == 0 and "(default)" in stdout
    panels = sorted(out.iterdir())
    assert [p.name for p in panels] == [f"{s.stem}_panel.png" for s in sorted(sample_paths())]
    for panel in panels:
        rgb = read_image(panel)[..., :3].astype(int)
        gold = (np.abs(rgb - [255, 215, 0]).sum(axis=-1) < 40).mean()
        assert 0.01 < gold < 0.5  # colonies present in the label panels, not everywhere


def test_train_named_configuration_and_model_options(synthetic, tmp_path):
    images, masks = synthetic
    paper = tmp_path / "paper.cellprep"
    assert run(*_train_args(images, masks, paper, "--config", "paper", "--val-fraction", "0"))[0] == 0
    config = read_info(paper).config
    assert all(getattr(config, key) == value for key, value in PAPER.items() if key != "penultimate")
    assert config.penultimate is None  # C wide, as the paper
    mixed = tmp_path / "mixed.cellprep"
    args = ("--config", "paper", "--upsample", "resize", "--norm", "group", "--freeze-norm", "--val-fraction", "0")
    assert run(*_train_args(images, masks, mixed, *args))[0] == 0
    info = read_info(mixed)
    assert (info.config.ensemble, info.config.upsample, info.config.norm) == ("learned", "resize", "group")
    assert info.training["freeze_norm"] is True
    assert_one_line_error(
        run(*_train_args(images, masks, tmp_path / "t.cellprep", "--init", paper, "--config", "paper")),
        "--config cannot be set when fine-tuning",
    )
