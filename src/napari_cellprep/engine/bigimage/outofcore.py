"""Prediction of images larger than memory into a zarr store, block by block.

``predict_to_zarr_iter`` plans every image's blocks (``engine.blocks``), computes each image's
normalisation statistics once by streaming it, predicts the blocks not yet done, in this process
or on a dask.distributed cluster (``engine.cluster``), and marks the store complete last
(``engine.zarr_store``). Memory per process: one block and one batch of tiles, whatever the
image size. An interrupted run is continued with ``resume=True``: finished blocks are skipped.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import LoadedModel
from ..devices import resolve_device, resolve_precision
from ..errors import SettingsError
from ..events import Progress
from ..images.io import keep_apart
from ..images.normalize import Normalization, count_nonfinite, report_nonfinite, streamed_channel_stats
from ..images.planes import LazyPlanes
from ..images.sources import ImageSource, open_image
from ..prediction.inference import check_outputs, output_dtype, output_shapes
from ..prediction.model_cache import cached_model, install, model_payload
from .blocks import BlockGrid, plan_grid, predict_region
from .zarr_store import (
    create_image,
    damage_reported,
    finish_image,
    finish_store,
    prepare_store,
    verified_blocks,
    write_block,
)


@dataclass(frozen=True)
class ImageRef:
    """How a process finds an image: a file or store path, or (in this process only) an array."""

    path: str | None
    in_channels: int
    rgb: bool | None = None
    channel_axis: int | None = None
    array: Any = field(default=None, compare=False, hash=False)

    def planes(self) -> LazyPlanes:
        if self.array is not None:
            return LazyPlanes(self.array, self.in_channels, rgb=self.rgb, channel_axis=self.channel_axis)
        return _opened(self)


@functools.lru_cache(maxsize=4)
def _opened(ref: ImageRef) -> LazyPlanes:
    """A worker opens each image once (TIFF memory maps and zarr arrays read lazily)."""
    source = open_image(ref.path)
    return LazyPlanes(source.array, ref.in_channels, rgb=ref.rgb, channel_axis=ref.channel_axis)


@dataclass(frozen=True)
class BlockTask:
    """Everything a process needs to predict and write one block."""

    store: str
    group: str
    image: ImageRef
    index: tuple[int, int, int]  # plane, block row, block column
    lead: tuple[int, ...]
    grid: BlockGrid
    model_key: str
    wanted: frozenset[str]
    normalization: Normalization
    config: Any
    batch_size: int
    precision: str


def image_stats(image: ImageRef, normalization: Normalization) -> list[list[tuple[float, float]]]:
    """Each plane's normalisation statistics, streamed over the whole plane (never per block);
    NaN and infinite pixels met on the way are reported (``report_nonfinite``)."""
    planes = image.planes()
    _, _, height, width = planes.shape
    nonfinite = 0

    def read_rows(p: int, start: int, stop: int) -> np.ndarray:
        nonlocal nonfinite
        rows = planes.read_rows(p, start, stop)
        nonfinite += count_nonfinite(rows)
        return rows

    stats = [
        streamed_channel_stats(functools.partial(read_rows, p), height, width, normalization)
        for p in range(planes.shape[0])
    ]
    report_nonfinite(nonfinite, image.path or "the image")
    return stats


def run_block(task: BlockTask, stats: list[list[tuple[float, float]]]) -> float:
    """Predict and write one block with the process's cached model; returns the seconds taken."""
    start = time.perf_counter()
    p, by, bx = task.index
    model, classifier = cached_model(task.model_key)
    arrays = predict_region(
        model, task.image.planes(), p, task.grid, by, bx, stats[p], task.normalization, task.config,
        task.wanted, batch_size=task.batch_size, precision=task.precision, classifier=classifier,
    )
    write_block(task.store, task.group, task.lead, task.index, task.grid.region(by, bx), arrays)
    return time.perf_counter() - start


@dataclass
class _Image:
    group: str
    ref: ImageRef
    source: ImageSource
    planes: LazyPlanes
    grid: BlockGrid
    pending: list[tuple[int, int, int]]


def _axes(source: ImageSource, planes: LazyPlanes) -> tuple[list[str] | None, list[float] | None]:
    """The outputs' axes and pixel sizes: the input's without its channel axis."""
    axes = [source.axes[k] for k in planes.kept_axes] if source.axes else None
    scale = [source.scale[k] for k in planes.kept_axes] if source.scale else None
    return axes, scale


def predict_to_zarr_iter(
    loaded: LoadedModel,
    images: Iterable[tuple[str, ImageSource, str | None]],
    out: str | Path,
    *,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 4,
    block: int | None = None,
    outputs: Iterable[str] = (),
    precision: str = "float32",
    resume: bool = False,
    overwrite: bool = False,
    executor: Any = None,
    inputs: Iterable[str | Path] = (),
) -> Generator[Progress, None, Path]:
    """Predict ``images`` ((group, source, path or None) each; group "" for a lone image) into
    the zarr store ``out``, yielding ``Progress`` per block; returns ``out``.

    ``executor`` runs the work: ``None`` this process, else a ``cluster.DaskExecutor``. A source
    without a path is read through its array (this process only). ``out`` may not be, contain or
    lie inside an image's path or any of ``inputs`` (files the arrays were read from). ``precision``
    "auto" is what the executor's device picks (``devices.default_precision``); the store's settings
    record the precision the blocks ran in.
    """
    wanted = check_outputs(outputs)
    if batch_size < 1:
        raise SettingsError(f"batch_size must be at least 1, got {batch_size}")
    executor = executor or LocalExecutor()
    precision = executor.precision(precision, loaded)
    info, out = loaded.info, Path(out)
    config = info.config
    blended, kept = output_shapes(config, wanted)
    maps = sum(int(np.prod(s)) for s in blended.values()) * 2 + sum(int(np.prod(s)) for s in kept.values())
    key, payload = model_payload(loaded)
    images = list(images)
    keep_apart([out], [path for _, _, path in images] + list(inputs))
    jobs = []
    for group, source, path in images:
        ref = ImageRef(path, config.in_channels, rgb, channel_axis, None if path else source.array)
        planes = LazyPlanes(source.array, config.in_channels, rgb=rgb, channel_axis=channel_axis)
        grid = plan_grid(planes.shape[2], planes.shape[3], config, tile, overlap, block, maps)
        jobs.append(_Image(group, ref, source, planes, grid, []))
    settings = {
        "model": key, "tile": tile, "overlap": overlap, "block": jobs[0].grid.block if jobs else block,
        "outputs": sorted(wanted), "precision": precision, "rgb": rgb, "channel_axis": channel_axis,
        "images": [[job.group, list(job.source.shape)] for job in jobs],
    }
    dtypes = {name: output_dtype(name, config.num_classes) for name in kept}
    with damage_reported(out):
        root = prepare_store(out, settings, resume=resume, overwrite=overwrite)
        for job in jobs:
            axes, _ = _axes(job.source, job.planes)
            lead_names = axes[:-2] if axes else [f"plane{k}" for k in range(len(job.planes.lead))]
            node = create_image(
                root, job.group, kept, dtypes, job.planes.lead, tuple(job.planes.shape[2:]), job.grid.block,
                job.grid.counts, lead_names,
            )
            done = verified_blocks(node, list(kept), job.planes.lead, job.grid.region)
            job.pending = [tuple(int(k) for k in index) for index in np.argwhere(~done)]
    executor.install(key, payload, loaded)
    todo = [job for job in jobs if job.pending]
    total, finished = sum(len(job.pending) for job in jobs), 0
    stats = executor.stats([job.ref for job in todo], info.normalization)
    tasks = {}
    for job, image_stats_ in zip(todo, stats):
        for index in job.pending:
            task = BlockTask(
                str(out), job.group, job.ref, index, job.planes.lead, job.grid, key, wanted,
                info.normalization, config, batch_size, precision,
            )
            tasks[(job.group, index)] = (task, image_stats_)
    remaining = {job.group: len(job.pending) for job in todo}
    by_group = {job.group: job for job in jobs}
    for (group, index), seconds in executor.run(tasks):
        finished += 1
        remaining[group] -= 1
        where = f"{group}: " if group else ""
        yield Progress(finished, total, f"{where}block {index} in {seconds:.1f} s")
        if remaining[group] == 0:
            _finish(root, by_group[group])
    for job in jobs:
        if not job.pending:
            _finish(root, job)
    finish_store(root)
    return out


def _finish(root: Any, job: _Image) -> None:
    node = root[job.group] if job.group else root
    axes, scale = _axes(job.source, job.planes)
    finish_image(node, axes, scale, job.source.units)


class LocalExecutor:
    """Runs every task in this process, one after another."""

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def _device(self, loaded: LoadedModel) -> Any:
        return resolve_device(self.device) if self.device else loaded.device

    def precision(self, precision: str, loaded: LoadedModel) -> str:
        """The precision ``precision`` ("auto" or a name) means on this process's device."""
        return resolve_precision(precision, self._device(loaded))

    def install(self, key: str, payload: bytes, loaded: LoadedModel) -> None:
        install(key, loaded, self._device(loaded))

    def stats(self, refs: list[ImageRef], normalization: Normalization) -> list:
        return [image_stats(ref, normalization) for ref in refs]

    def run(self, tasks: dict) -> Generator[tuple[Any, float], None, None]:
        for name, (task, stats) in tasks.items():
            yield name, run_block(task, stats)
