"""Hostile and careless input (issue #40): outputs that would touch inputs, outputs checked before
any work, one-line CLI errors and ``CellprepError`` in the API for a user's mistakes, NaN/inf
pixels reported, painted labels given as class indices named, colliding class names refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
import zarr

import napari_cellprep as cp
from napari_cellprep.engine.bigimage.outofcore import predict_to_zarr_iter
from napari_cellprep.engine.errors import CellprepError, CellprepWarning, OutputError
from napari_cellprep.engine.events import drive
from napari_cellprep.engine.images.labels import LabelKind, class_count
from napari_cellprep.engine.images.sources import ImageSource
from napari_cellprep.engine.training.plan import model_to_train
from tests.cli.test_cli import assert_one_line_error, run
from tests.conftest import disks

TINY = ["--width", "4", "--depth", "2", "--batch-size", "2", "--patch-size", "64", "--device", "cpu", "--epochs", "1"]


@pytest.fixture
def model_file(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture
def folder(tmp_path):
    """``s/`` with ``x.tif`` and ``x_labels.tif``: an image and (as a user may keep it) its mask."""
    image, mask = disks(0, (64, 64))
    (tmp_path / "s").mkdir()
    tifffile.imwrite(tmp_path / "s" / "x.tif", image)
    tifffile.imwrite(tmp_path / "s" / "x_labels.tif", mask)
    return tmp_path / "s"


# --- outputs never touch inputs, and are checked before any work ------------------------------


def test_a_zarr_output_that_is_its_input_is_refused_and_the_input_kept(model_file, tmp_path):
    store = tmp_path / "x.zarr"
    zarr.create_array(store, data=disks(0, (64, 64))[0])
    before = zarr.open_array(store, mode="r")[...]
    args = ["predict", store, "--model", model_file, "--device", "cpu"]
    assert_one_line_error(run(*args, "--out", store, "--overwrite"), "is the input", "choose another output")
    assert np.array_equal(zarr.open_array(store, mode="r")[...], before)
    assert_one_line_error(run(*args, "--out", store / "labels.zarr"), "lies inside the input")
    assert not (store / "labels.zarr").exists()


def test_a_tiff_output_that_is_an_input_is_refused_before_any_file_is_written(model_file, folder):
    mask = (folder / "x_labels.tif").read_bytes()
    result = run("predict", folder, "--out", folder, "--overwrite", "--model", model_file, "--device", "cpu")
    assert_one_line_error(result, "x_labels.tif is the input")
    assert (folder / "x_labels.tif").read_bytes() == mask
    assert sorted(p.name for p in folder.iterdir()) == ["x.tif", "x_labels.tif"]


def test_the_dock_and_api_zarr_face_keeps_the_store_apart_from_the_layers_file(model_file, tmp_path):
    loaded = cp.load(model_file, device="cpu")
    source = ImageSource(disks(0, (64, 64))[0], "x")
    with pytest.raises(OutputError, match="lies inside the input"):
        drive(predict_to_zarr_iter(loaded, [("", source, None)], tmp_path / "in.zarr" / "o.zarr",
                                   inputs=[tmp_path / "in.zarr"]))


def test_train_and_export_refuse_to_write_over_their_inputs(model_file, folder):
    pair = ["--pair", folder / "x.tif", folder / "x_labels.tif"]
    result = run("train", *pair, "--init", model_file, "--out", model_file, "--overwrite", "--epochs", "1")
    assert_one_line_error(result, "is the input")
    result = run("export", model_file, "--bioimageio", model_file, "--overwrite")
    assert_one_line_error(result, "is the input")


def test_outputs_that_cannot_be_written_fail_before_any_work(model_file, folder, tmp_path):
    occupied = tmp_path / "a_file"
    occupied.write_text("mine")
    pair = ["--pair", folder / "x.tif", folder / "x_labels.tif"]
    assert_one_line_error(run("train", *pair, *TINY, "--out", occupied / "m.cellprep"), "is a file, not a folder")
    result = run("predict", folder / "x.tif", "--out", occupied, "--model", model_file, "--device", "cpu")
    assert_one_line_error(result, "is a file, not a folder")
    assert occupied.read_text() == "mine"


def test_a_folder_that_refuses_writing_fails_before_training(folder, tmp_path, monkeypatch):
    import tempfile

    def refused(**kwargs):  # as a read-only folder answers a non-root user
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    pair = ["--pair", folder / "x.tif", folder / "x_labels.tif"]
    code, out, err = run("train", *pair, *TINY, "--out", tmp_path / "read-only" / "m.cellprep")
    assert_one_line_error((code, out, err), "cannot write", "Permission denied")
    assert "training a" not in out


# --- one-line errors in the CLI, CellprepError in the API --------------------------------------


def test_damaged_inputs_and_bad_devices_give_one_line_errors(model_file, tmp_path):
    tifffile.imwrite(tmp_path / "whole.tif", disks(0, (64, 64))[0])
    data = (tmp_path / "whole.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    for name, multiscales in (("missing.zarr", [{"datasets": [{"path": "nope"}]}]), ("text.zarr", "abc")):
        group = zarr.open_group(tmp_path / name, mode="w")
        group.create_array("0", data=np.ones((64, 64), np.uint16))
        group.attrs["ome"] = {"multiscales": multiscales}
    common = ["--model", model_file, "--out", tmp_path / "out"]
    assert_one_line_error(run("predict", tmp_path / "cut.tif", *common), "is truncated")
    assert_one_line_error(run("predict", tmp_path / "missing.zarr", *common), "multiscales", "KeyError")
    assert_one_line_error(run("predict", tmp_path / "text.zarr", *common), "multiscales", "TypeError")
    assert_one_line_error(run("predict", tmp_path / "whole.tif", *common, "--device", "nonsense"), "not a device")
    with pytest.raises(CellprepError, match="not a device"):
        cp.load(model_file, device="nonsense")


def test_api_mistakes_raise_cellprep_error(model_file):
    loaded = cp.load(model_file, device="cpu")
    image, mask = disks(0, (64, 64))
    with pytest.raises(CellprepError, match="'widht' is not an architecture setting"):
        cp.train(image, mask, labels_kind="class_index", architecture={"widht": 4})
    with pytest.raises(CellprepError, match="unknown outputs"):
        cp.predict(loaded, image, outputs=("labelz",))
    with pytest.raises(CellprepError, match="takes the Prediction"):
        cp.instances(np.zeros((10, 10)))
    with pytest.raises(CellprepError, match="not a LoadedModel"):
        cp.load(loaded)


# --- silent surprises ----------------------------------------------------------------------------


def test_nan_and_inf_pixels_are_counted_and_treated_alike(model_file, tmp_path):
    loaded = cp.load(model_file, device="cpu")
    image = disks(0, (64, 64))[0].astype(np.float32)
    holes, infinite = image.copy(), image.copy()
    holes[20:40, 20:40], infinite[20:40, 20:40] = np.nan, np.inf
    with pytest.warns(CellprepWarning, match="400 pixel.* NaN or infinite; they were taken as the lowest"):
        with_nan = cp.predict(loaded, holes, tile=64, overlap=0)
    with pytest.warns(CellprepWarning, match="400 pixel"):
        with_inf = cp.predict(loaded, infinite, tile=64, overlap=0)
    assert np.array_equal(with_nan.labels, with_inf.labels)  # +inf is not the brightest pixel
    with warnings.catch_warnings():
        warnings.simplefilter("error", CellprepWarning)
        cp.predict(loaded, image, tile=64, overlap=0)  # a finite image: not a word
    tifffile.imwrite(tmp_path / "holes.tif", holes)
    code, _, err = run("predict", tmp_path / "holes.tif", "--out", tmp_path / "o", "--model", model_file)
    assert code == 0 and "cellprep: warning: the image: 400 pixel(s) are NaN or infinite" in err


def _painted_as_class_index() -> list:
    """Strokes painted as in napari (0 = not annotated, 1 and 2 = classes 0 and 1), read as masks."""
    labels = np.zeros((64, 64), np.int64)
    labels[5:8, 5:30], labels[40:43, 10:40] = 1, 2
    return [("x.tif", labels, LabelKind.CLASS_INDEX)]


def test_painted_labels_given_as_class_indices_are_named(folder, tmp_path):
    with pytest.warns(CellprepWarning, match="mask value 0 covers 96%.*--painted"):
        assert class_count(_painted_as_class_index()) == 3
    with pytest.raises(CellprepError, match="mask value 2 is not a class.*--painted"):
        class_count(_painted_as_class_index(), 2)
    dense = np.zeros((64, 64), np.int64)
    dense[:30], dense[30:40] = 1, 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", CellprepWarning)
        assert class_count([("dense", dense, LabelKind.CLASS_INDEX)]) == 3
    tifffile.imwrite(folder / "painted.tif", _painted_as_class_index()[0][1].astype(np.uint8))
    result = run("train", "--pair", folder / "x.tif", folder / "painted.tif", *TINY, "--classes", "2",
                 "--out", tmp_path / "m.cellprep")
    assert_one_line_error(result, "mask value 2 is not a class", "--painted")
    assert not (tmp_path / "m.cellprep").exists()
    assert "-1 = unlabelled" in run("train", "--help")[1]


@pytest.mark.parametrize("names", [["a", "a"], ["", ""], ["A B", "A_B"]])
def test_class_names_that_collide_as_identifiers_are_refused_at_training(names):
    with pytest.raises(CellprepError, match="same once made identifiers"):
        model_to_train(2, 1, class_names=names, architecture={"width": 4, "depth": 2})
