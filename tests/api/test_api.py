"""The public API: cheap to import, explicit about label conventions, the engine's code paths."""

import subprocess
import sys

import numpy as np
import pytest

import napari_cellprep as cp
from napari_cellprep.engine.errors import SettingsError, TrainingDataError
from napari_cellprep.engine.prediction.inference import predict as engine_predict
from napari_cellprep.engine.training.plan import FINE_TUNE_DEFAULTS
from tests.conftest import REPO, disks


def test_import_is_cheap():
    code = (
        "import sys, napari_cellprep as cp; heavy = {'torch', 'napari', 'qtpy', 'PyQt6', 'magicgui'}; "
        "assert not heavy & set(sys.modules), heavy & set(sys.modules); "
        "assert callable(cp.predict) and 'torch' in sys.modules and 'napari' not in sys.modules; "
        "assert 'fine_tune' in dir(cp) and cp.__version__"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO / "src")
    with pytest.raises(AttributeError):
        cp.no_such_function  # noqa: B018


def test_predict_is_the_engines(tiny_checkpoint, cells):
    image = cells((80, 72))
    result = cp.predict(str(tiny_checkpoint), image, outputs=("filters",), tile=64, overlap=16, device="cpu")
    expected = engine_predict(
        cp.load(tiny_checkpoint, device="cpu"), image, tile=64, overlap=16, outputs=("filters",)
    )
    np.testing.assert_array_equal(result.labels, expected.labels)
    np.testing.assert_allclose(result.filters, expected.filters, atol=1e-6)
    assert result.probabilities is None and result.disagreement is None
    with pytest.raises(TypeError):
        cp.predict(tiny_checkpoint, image, tiles=64)  # no **options that swallow typos


TINY = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": 32, "seed": 0, "device": "cpu"}


def test_labels_kind_is_required_and_decides():
    image, mask = disks(0)
    with pytest.raises(TypeError):
        cp.train(image, mask, **TINY)  # the convention is never guessed
    result = cp.train(
        image, mask, labels_kind="class_index", architecture={"width": 4, "depth": 2}, validation=0.0, **TINY
    )
    assert result.model.info.config.num_classes == 2 and result.epochs_run == 1
    assert result.model.info.config.width == 4
    # the same 0/1 mask read as painted values: 0 = not annotated, 1 = class 0 only
    with pytest.raises(TrainingDataError, match="class 0"):
        cp.train(image, mask, labels_kind="painted", **TINY)
    with pytest.raises(SettingsError, match="labels_kind"):
        cp.train(image, mask, labels_kind="guess", **TINY)


def test_fine_tune_takes_painted_strokes_and_the_fine_tune_rule(tiny_checkpoint, tmp_path):
    image, mask = disks(1)
    strokes = np.zeros_like(mask)
    strokes[:4] = 1  # background
    strokes[mask == 1] = 2  # colony
    events = []
    result = cp.fine_tune(
        tiny_checkpoint, image, strokes, labels_kind="painted", callback=events.append, **TINY
    )
    training = result.model.info.training
    assert training["fine_tuned_from"] == "tiny" and training["learning_rate"] == FINE_TUNE_DEFAULTS["learning_rate"]
    assert training["refresh_norm"] is True  # a fine-tuning default (training afresh: off)
    assert training["val_labeled_pixels"] == 0  # fine-tuning holds out nothing by default
    assert training["adapt_norm"] is True  # the engine's fine-tuning default reaches the API
    assert result.model.info.class_names == ["background", "colony"]
    assert any(type(e).__name__ == "EpochEnd" for e in events)
    path = cp.save(result.model, tmp_path / "tuned.cellprep")
    with pytest.raises(cp.CellprepError, match="already exists"):
        cp.save(result.model, path)
    assert cp.load(path, device="cpu").info.training["fine_tuned_from"] == "tiny"


def test_validation_images_and_bad_pairs(tiny_checkpoint):
    (image, mask), (val_image, val_mask) = disks(2), disks(3)
    result = cp.fine_tune(
        cp.load(tiny_checkpoint, device="cpu"),
        [image],
        [mask],
        labels_kind="class_index",
        validation=([val_image], [val_mask]),
        **TINY,
    )
    assert result.best_miou is not None and result.model.info.training["val_labeled_pixels"] == mask.size
    with pytest.raises(SettingsError, match="2 image"):
        cp.fine_tune(tiny_checkpoint, [image, image], [mask], labels_kind="class_index", **TINY)


def test_predict_defaults_to_the_engine_precision_and_records_it(tiny_checkpoint, cells, monkeypatch):
    from napari_cellprep.engine import devices

    image = cells((64, 64))
    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset())
    auto = cp.predict(tiny_checkpoint, image, device="cpu")
    exact = engine_predict(cp.load(tiny_checkpoint, device="cpu"), image, precision="float32")
    assert auto.precision == "float32" and np.array_equal(auto.labels, exact.labels)
    assert cp.predict(tiny_checkpoint, image, device="cpu", precision="bfloat16").precision == "bfloat16"
    monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda: True)
    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset({("cpu", "bfloat16")}))
    assert cp.predict(tiny_checkpoint, image, device="cpu").precision == "bfloat16"
    with pytest.raises(SettingsError, match="precision"):
        cp.predict(tiny_checkpoint, image, precision="fp8")
