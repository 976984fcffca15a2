"""``cellprep predict --precision``: files and zarr stores run in the precision asked for ("auto": the
engine's default for the device), say which, and the store records it."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_cellprep.engine import devices
from napari_cellprep.engine.checkpoint import load_checkpoint
from napari_cellprep.engine.prediction.inference import predict
from tests.cli.test_cli import run
from tests.conftest import disks


@pytest.fixture
def cell_image(tmp_path):
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, disks(3, (96, 96))[0])
    return path


@pytest.mark.parametrize("asked, used", [(None, "float32"), ("float32", "float32"), ("bfloat16", "bfloat16")])
def test_files_and_stores_run_in_the_precision_asked_for(asked, used, cell_image, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset())  # "auto" is float32 on every device
    option = ["--precision", asked] if asked else []
    expected = predict(load_checkpoint(tiny_checkpoint), tifffile.imread(cell_image), precision=used).labels
    code, out, err = run("predict", cell_image, "--model", tiny_checkpoint, "--out", tmp_path / "tifs", *option)
    assert code == 0 and f" in {used}\n" in out
    assert np.array_equal(tifffile.imread(tmp_path / "tifs" / "cells_labels.tif"), expected)
    emulated = used == "bfloat16" and not devices.cpu_has_native_bfloat16()
    assert ("emulated" in err) == emulated  # a 16-bit type the CPU lacks is slow: said so
    code, out, _ = run("predict", cell_image, "--model", tiny_checkpoint, "--out", tmp_path / "o.zarr", *option)
    root = zarr.open_group(tmp_path / "o.zarr", mode="r")
    assert code == 0 and f" in {used}\n" in out and root.attrs["cellprep"]["settings"]["precision"] == used
    assert np.array_equal(root["labels"][...], expected)


def test_auto_follows_the_engine_default(cell_image, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda: True)
    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset({("cpu", "bfloat16")}))
    code, out, err = run("predict", cell_image, "--model", tiny_checkpoint, "--out", tmp_path / "o.zarr", "--device", "cpu")
    assert code == 0 and " in bfloat16\n" in out and "emulated" not in err
    assert zarr.open_group(tmp_path / "o.zarr", mode="r").attrs["cellprep"]["settings"]["precision"] == "bfloat16"


def test_an_unknown_precision_is_a_usage_error(cell_image, tiny_checkpoint, tmp_path):
    code, _, err = run("predict", cell_image, "--model", tiny_checkpoint, "--out", tmp_path / "o", "--precision", "fp8")
    assert code == 2 and "invalid choice: 'fp8'" in err and "bfloat16" in err
    assert not (tmp_path / "o").exists()
