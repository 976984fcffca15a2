"""Prediction on a local dask.distributed cluster of 2 worker processes: the same labels as in this
process, for one image and a folder, and no finished block lost when a worker dies."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_cellprep import cli
from napari_cellprep.engine.bigimage.outofcore import predict_to_zarr_iter
from napari_cellprep.engine.checkpoint import save_checkpoint
from napari_cellprep.engine.events import drive
from napari_cellprep.engine.images.sources import open_image
from napari_cellprep.engine.prediction.inference import predict
from tests.engine.bigimage.test_outofcore import TILING, image
from tests.engine.prediction.test_inference import tiny_model

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def model():
    return tiny_model("cellprep")


@pytest.fixture(scope="module")
def executor():
    from napari_cellprep.engine.bigimage.cluster import dask_executor

    with dask_executor(2, None) as executor:
        yield executor


def test_two_workers_equal_this_process_on_an_image_and_a_folder(model, executor, tmp_path):
    folder = tmp_path / "plate"
    folder.mkdir()
    arrays = {f"well{k}": image((150 + 40 * k, 170), k) for k in range(3)}
    for name, array in arrays.items():
        tifffile.imwrite(folder / f"{name}.tif", array)
    images = [(name, open_image(folder / f"{name}.tif"), str(folder / f"{name}.tif")) for name in arrays]
    out = drive(predict_to_zarr_iter(model, images, tmp_path / "plate.zarr", block=96, executor=executor, **TILING))
    root = zarr.open_group(out, mode="r")
    assert root.attrs["cellprep"]["complete"] is True
    for name, array in arrays.items():
        assert np.array_equal(root[f"{name}/labels"][...], predict(model, array, **TILING).labels), name
    workers = executor.client.run(os.getpid)
    assert len(set(workers.values())) == 2 and os.getpid() not in workers.values()


def test_cli_on_a_running_cluster_equals_in_process(model, executor, tmp_path):
    checkpoint = save_checkpoint(tmp_path / "m.cellprep", model.model, model.info)
    tifffile.imwrite(tmp_path / "one.tif", image((260, 250), 7))
    args = ["predict", str(tmp_path / "one.tif"), "--model", str(checkpoint), "--tile", "128", "--overlap", "32",
            "--block", "96"]
    assert cli.main([*args, "--out", str(tmp_path / "local.zarr")]) == 0
    address = executor.client.scheduler.address  # what --workers N starts, given as --scheduler
    assert cli.main([*args, "--out", str(tmp_path / "cluster.zarr"), "--scheduler", address]) == 0
    local, cluster = (zarr.open_array(tmp_path / f"{n}.zarr", path="labels", mode="r")[...] for n in ("local", "cluster"))
    assert np.array_equal(local, cluster) and 0 < local.mean() < 1


def wait_until_idle(client, timeout: float = 60.0) -> None:
    """Until the scheduler holds no task and no worker runs one (twice in a row)."""

    def busy() -> int:
        running = client.run(lambda dask_worker: len(dask_worker.state.executing))
        return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) + sum(running.values())

    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 2 and time.monotonic() < deadline:
        quiet = quiet + 1 if busy() == 0 else 0
        time.sleep(0.2)


def test_a_killed_worker_loses_no_finished_block_and_resume_finishes(model, executor, tmp_path):
    array = image((480, 480), 3)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, array)
    ref = predict(model, array, **TILING).labels
    images = [("", open_image(path), str(path))]
    events = predict_to_zarr_iter(model, images, tmp_path / "o.zarr", block=96, executor=executor, **TILING)
    next(events)
    victim = sorted(executor.client.run(os.getpid).values())[0]
    os.kill(victim, signal.SIGKILL)  # mid-run: the other worker goes on, the nanny restarts this one
    for _ in range(3):
        next(events)
    events.close()  # then the client stops too, as a killed job would
    wait_until_idle(executor.client)  # a block already running on a worker still finishes and is marked
    root = zarr.open_group(tmp_path / "o.zarr", mode="r")
    assert root.attrs["cellprep"]["complete"] is False
    done = root["done"][0].astype(bool)
    assert 4 <= done.sum() <= 4 + 2 * 2  # the 4 received, and at most 2 blocks per worker thread in flight
    labels = root["labels"][...]
    for by, bx in np.argwhere(done):  # every block marked done holds exactly its labels
        rows, cols = slice(96 * by, 96 * by + 96), slice(96 * bx, 96 * bx + 96)
        assert np.array_equal(labels[rows, cols], ref[rows, cols])
    resumed = []
    drive(predict_to_zarr_iter(model, images, tmp_path / "o.zarr", block=96, resume=True, executor=executor,
                               **TILING), resumed.append)
    assert resumed[-1].total == done.size - done.sum()
    assert np.array_equal(zarr.open_array(tmp_path / "o.zarr", path="labels", mode="r")[...], ref)


def test_auto_precision_is_what_the_workers_hardware_picks(model, executor, monkeypatch):
    from napari_cellprep.engine.bigimage.cluster import DaskExecutor
    from napari_cellprep.engine.devices import default_precision

    assert executor.precision("auto", model) == default_precision(torch.device("cpu"))  # asked of both workers
    assert executor.precision("bfloat16", model) == "bfloat16"

    class Answers:
        """A client whose workers answer ``picks`` when asked what "auto" means there."""

        def __init__(self, *picks: str) -> None:
            self.picks = picks

        def run(self, function, *args):
            return {f"tcp://worker{k}": pick for k, pick in enumerate(self.picks)}

    assert DaskExecutor(Answers("bfloat16", "bfloat16")).precision("auto", model) == "bfloat16"
    assert DaskExecutor(Answers("bfloat16", "float32")).precision("auto", model) == "float32"  # mixed hardware
    assert DaskExecutor(Answers()).precision("auto", model) == default_precision(torch.device("cpu"))


def test_cli_workers_run_in_the_precision_asked_for(model, executor, tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "m.cellprep", model.model, model.info)
    tifffile.imwrite(tmp_path / "one.tif", image((200, 190), 3))
    address = executor.client.scheduler.address
    args = ["predict", str(tmp_path / "one.tif"), "--model", str(checkpoint), "--tile", "128", "--overlap", "32",
            "--block", "96", "--out", str(tmp_path / "half.zarr"), "--scheduler", address, "--precision", "bfloat16"]
    assert cli.main(args) == 0
    assert " in bfloat16\n" in capsys.readouterr().out
    root = zarr.open_group(tmp_path / "half.zarr", mode="r")
    assert root.attrs["cellprep"]["settings"]["precision"] == "bfloat16"
    half = predict(model, image((200, 190), 3), precision="bfloat16", outputs=("probabilities",), **TILING)
    decided = np.abs(np.diff(half.probabilities, axis=0))[0] > 1e-3  # off the near-ties
    assert decided.mean() > 0.99 and np.array_equal(root["labels"][...][decided], half.labels[decided])
