"""Blocks on a dask.distributed cluster: a local one of N worker processes, or one at an address.

Each worker process holds the model once (a worker plugin installs it from safetensors bytes at
the worker's start, also on workers that join or restart later) and runs one block at a time
with torch on ``cores / workers`` threads (on a cluster: the job's cores / its dask threads): a block is one big torch computation, so more dask
threads per worker would only compete for the same cores. Blocks are written by the workers
straight into the zarr store, so the store's path must be reachable from every worker (on a
cluster: a shared file system); the client only schedules and counts.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import torch
from distributed import Client, LocalCluster, WorkerPlugin, as_completed

from ..checkpoint import LoadedModel
from ..devices import default_precision, resolve_precision
from ..errors import SettingsError
from ..images.normalize import Normalization
from ..prediction.model_cache import install_payload
from .outofcore import ImageRef, image_stats, run_block


class ModelPlugin(WorkerPlugin):
    """Installs the model in each worker process once, and sets its torch threads."""

    name = "napari-cellprep-model"

    def __init__(self, key: str, payload: bytes, device: str, threads: int | None) -> None:
        self.key, self.payload, self.device, self.threads = key, payload, device, threads

    def setup(self, worker: Any) -> None:
        import torch

        torch.set_num_threads(self.threads or max(1, available_cores() // max(1, worker.state.nthreads)))
        install_payload(self.key, self.payload, self.device)


def available_cores() -> int:
    """The cores this process may run on (a batch job's allocation, not the whole node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def torch_threads_per_worker(workers: int) -> int:
    """Cores shared out evenly between ``workers`` processes."""
    return max(1, available_cores() // workers)


def worker_default_precision(device: str) -> str:
    """What "auto" means on the worker process this runs in (``devices.default_precision``)."""
    return default_precision(torch.device(device))


class DaskExecutor:
    """Runs stats and block tasks on a ``distributed.Client``; failed workers' tasks are retried."""

    def __init__(self, client: Client, device: str = "cpu", threads: int | None = None) -> None:
        self.client, self.device, self.threads = client, device, threads

    def precision(self, precision: str, loaded: LoadedModel) -> str:
        """One precision for every block: a named one, or for "auto" what the workers' hardware
        picks (each worker is asked; float32 when they differ, the one every worker runs exactly)."""
        if precision not in (None, "auto"):
            return resolve_precision(precision, torch.device(self.device))
        picked = set(self.client.run(worker_default_precision, self.device).values())
        if not picked:  # no worker yet: this machine's answer
            return resolve_precision(precision, torch.device(self.device))
        return picked.pop() if len(picked) == 1 else "float32"

    def install(self, key: str, payload: bytes, loaded: LoadedModel) -> None:
        self.client.register_plugin(ModelPlugin(key, payload, self.device, self.threads))

    def stats(self, refs: list[ImageRef], normalization: Normalization) -> list:
        if any(ref.path is None for ref in refs):
            raise SettingsError("images held in memory cannot be sent to a cluster; predict them in this process")
        return self.client.map(image_stats, refs, normalization=normalization, pure=False)

    def run(self, tasks: dict, per_thread: int = 2) -> Generator[tuple[Any, float], None, None]:
        """Block results as they finish, keeping ``per_thread`` blocks per worker thread in flight
        (counted again as workers join or leave): enough to keep every worker busy, few enough
        that stopping wastes little work."""
        pending = iter(tasks.items())
        names: dict = {}
        flying = as_completed()

        def top_up() -> None:
            wanted = per_thread * max(1, sum(self.client.nthreads().values()))
            while len(names) < wanted and (item := next(pending, None)) is not None:
                name, (task, stats) = item
                future = self.client.submit(run_block, task, stats, pure=False, retries=2)
                names[future] = name
                flying.add(future)

        try:
            top_up()
            for future in flying:
                yield names.pop(future), future.result()
                top_up()
        finally:
            self.client.cancel([f for f in names if not f.done()])


@contextmanager
def dask_executor(
    workers: int | None, scheduler: str | None, device: str = "cpu"
) -> Generator[DaskExecutor, None, None]:
    """A ``DaskExecutor`` on a local cluster of ``workers`` processes or on ``scheduler``'s."""
    if scheduler:
        with Client(scheduler) as client:
            yield DaskExecutor(client, device)
        return
    if not workers or workers < 1:
        raise SettingsError(f"--workers must be at least 1, got {workers}")
    threads = torch_threads_per_worker(workers)
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as cluster, Client(cluster) as client:
        yield DaskExecutor(client, device, threads)
