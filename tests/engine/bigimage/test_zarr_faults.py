"""Fault test of the zarr store: a writer killed (SIGKILL) at random blocks several times, chunks
and markers damaged, then ``--resume``: the result equals an uninterrupted run, pixel for pixel.
A store whose metadata is damaged is refused in one line."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest
import zarr

from napari_cellprep.engine.bigimage import outofcore, zarr_store
from napari_cellprep.engine.bigimage.outofcore import predict_to_zarr_iter
from napari_cellprep.engine.errors import ImageReadError, OutputError
from napari_cellprep.engine.events import drive
from napari_cellprep.engine.images.sources import ImageSource, open_image
from tests.engine.prediction.test_inference import textured, tiny_model

SMALL = {"block": 32, "tile": 32, "overlap": 8, "outputs": ("disagreement",)}
"""A 112 x 100 image in 4 x 4 blocks, labels and the disagreement map."""


@pytest.fixture(scope="module")
def model():
    return tiny_model("cellprep")


def image() -> np.ndarray:
    return (textured((112, 100), 3) * 4000 + 100).astype(np.uint16)


def run(model, out, **options) -> None:
    drive(predict_to_zarr_iter(model, [("", ImageSource(image(), "x"), None)], out, **SMALL, **options))


def _killed_at(model, out, block: int, phase: int) -> None:
    """In a forked child: resume ``out`` and SIGKILL this process in block ``block``'s write,
    before its data (phase 0), between data and marker (1) or after its marker (2)."""
    real_write, real_marker = outofcore.write_block, zarr_store.checksum
    calls = []

    def write_block(*args):
        calls.append(1)
        if len(calls) == block + 1 and phase == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(*args)
        if len(calls) == block + 1:
            os.kill(os.getpid(), signal.SIGKILL)

    def checksum(arrays):
        if len(calls) == block + 1 and phase == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_marker(arrays)

    outofcore.write_block, zarr_store.checksum = write_block, checksum
    run(model, out, resume=True)
    os._exit(0)  # finished before the chosen block


def test_killed_writer_and_damaged_chunks_resume_to_the_uninterrupted_result(model, tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    run(model, tmp_path / "clean.zarr")
    clean = zarr.open_group(tmp_path / "clean.zarr", mode="r")
    out = tmp_path / "o.zarr"
    fork = multiprocessing.get_context("fork")
    for _ in range(3):
        child = fork.Process(target=_killed_at, args=(model, out, int(rng.integers(0, 6)), int(rng.integers(0, 3))))
        child.start()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL, f"seed {seed}"
        assert zarr.open_group(out, mode="r").attrs["cellprep"]["complete"] is False, f"seed {seed}"
        with pytest.raises(ImageReadError, match="unfinished"):
            open_image(out)
    root = zarr.open_group(out, mode="r")
    done = np.argwhere(root["done"][...] != 0)
    assert len(done) >= 3, f"seed {seed}"
    (_, y0, x0), (_, y1, x1), (p2, y2, x2) = done[rng.permutation(len(done))[:3]]
    (out / "labels" / "c" / str(y0) / str(x0)).unlink()  # a lost chunk reads as zeros
    (out / "disagreement" / "c" / str(y1) / str(x1)).write_bytes(rng.bytes(200))  # garbage
    (out / "done" / "c" / str(p2) / str(y2) / str(x2)).write_bytes(rng.bytes(50))  # a garbage marker
    run(model, out, resume=True)
    root = zarr.open_group(out, mode="r")
    assert root.attrs["cellprep"]["complete"] is True
    for name in ("labels", "disagreement"):
        assert np.array_equal(root[name][...], clean[name][...]), f"{name}, seed {seed}"


def test_a_resumed_block_whose_data_differs_from_its_checksum_is_computed_again(model, tmp_path):
    out = tmp_path / "o.zarr"
    run(model, out)
    expected = zarr.open_group(out, mode="r")["labels"][...]
    zarr.open_group(out, mode="r+")["labels"][40:60, 40:60] = 7  # readable, but not what was written
    progress = []
    drive(predict_to_zarr_iter(model, [("", ImageSource(image(), "x"), None)], out, resume=True, **SMALL),
          progress.append)
    assert progress[-1].total == 4  # the four blocks the square touches, nothing else
    assert np.array_equal(zarr.open_group(out, mode="r")["labels"][...], expected)


def test_a_store_whose_metadata_is_damaged_is_refused_in_one_line(model, tmp_path):
    out = tmp_path / "o.zarr"
    run(model, out)
    (out / "labels" / "zarr.json").write_text("garbage")
    with pytest.raises(OutputError, match="damaged beyond what --resume repairs.*--overwrite"):
        run(model, out, resume=True)
    run(model, out, overwrite=True)
    assert zarr.open_group(out, mode="r").attrs["cellprep"]["complete"] is True
