"""The Segment dock on images that do not fit in memory, and on the current view only (no Qt).

A layer backed by dask or zarr, or a multiscale layer, is predicted block by block into a zarr
store (``engine.outofcore``, in the dock's worker thread) from its full-resolution level, read
window by window; its outputs are lazy layers over the store (``StoreView``) that show each block
as soon as it is written. "Current view only" predicts the visible part of the current plane in
memory, placed where it lies.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Collection, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..engine.bigimage.outofcore import LocalExecutor, predict_to_zarr_iter
from ..engine.checkpoint import ModelInfo
from ..engine.events import Progress
from ..engine.images.labels import labels_dtype
from ..engine.images.sources import ImageSource
from ..engine.threads import gui_job
from .layers import MARKER, LayerData, class_colormap, layer_prefix
from .registry import ModelEntry, ModelRegistry


def is_big(layer: Any) -> bool:
    """Whether a layer's pixels are lazy (dask, zarr, ...) or a pyramid: predicted out of core."""
    return bool(layer.multiscale) or not isinstance(layer.data, np.ndarray)


def full_resolution(layer: Any) -> Any:
    """The layer's full-resolution array, not read."""
    return layer.data[0] if layer.multiscale else layer.data


def visible_window(viewer: Any, layer: Any) -> tuple[tuple[slice, ...], np.ndarray]:
    """Index of the visible part of the current plane in the layer's full-resolution data, and
    its offset in data pixels (from ``viewer.camera`` and ``layer.world_to_data``)."""
    shape = full_resolution(layer).shape[: layer.ndim]
    world = np.asarray(viewer.dims.point, dtype=float)[-layer.ndim :]
    half = np.asarray(viewer.canvas.size, dtype=float) / (2 * viewer.camera.zoom)
    centre = np.asarray(viewer.camera.center, dtype=float)[-2:]
    corners = []
    for sign in (-1, 1):
        point = world.copy()
        point[-2:] = centre + sign * half
        corners.append(np.asarray(layer.world_to_data(point)))
    low, high = np.minimum(*corners), np.maximum(*corners)
    index, offset = [], []
    for axis, n in enumerate(shape):
        if axis < layer.ndim - 2:  # the current plane: one entry, kept as an axis of length 1
            k = int(np.clip(round(low[axis]), 0, n - 1))
            index.append(slice(k, k + 1))
        else:
            start = int(np.clip(math.floor(low[axis]), 0, n - 1))
            index.append(slice(start, int(np.clip(math.ceil(high[axis]) + 1, start + 1, n))))
        offset.append(index[-1].start)
    return tuple(index), np.asarray(offset, dtype=float)


def view_crop(viewer: Any, layer: Any) -> tuple[np.ndarray, tuple[float, ...]]:
    """The visible pixels of the current plane (read alone) and the translate that puts outputs
    made from them where they lie."""
    index, offset = visible_window(viewer, layer)
    crop = np.asarray(full_resolution(layer)[index])
    return crop, tuple(np.asarray(layer.translate) + offset * np.asarray(layer.scale))


class StoreView:
    """One output of a zarr store as a lazy array for napari: blocks not yet written read as 0;
    ``painted`` labels show class k as k + 1 (as every Labels layer of ours); ``step`` subsamples
    Y and X (a pyramid level)."""

    def __init__(self, store: Path, name: str, shape: Sequence[int], dtype: Any, painted: bool, step: int = 1) -> None:
        self.store, self.name, self.painted, self.step = store, name, painted, step
        self.full = tuple(shape)
        self.shape = (*self.full[:-2], *(-(-n // step) for n in self.full[-2:]))
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[...]
        return values if dtype is None else values.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        axes = [np.arange(n)[k] for n, k in zip(self.shape, key)]  # the entries asked for, per axis
        rows, cols = (np.atleast_1d(a) * self.step for a in axes[-2:])
        lead = [np.atleast_1d(a) for a in axes[:-2]]
        try:
            data = zarr.open_array(self.store, path=self.name, mode="r")
            done = zarr.open_array(self.store, path="done", mode="r")[...]
        except (OSError, KeyError, ValueError):  # not written yet (zarr: FileNotFoundError)
            done = None
        shape = [len(a) for a in lead] + [len(rows), len(cols)]
        if done is None:
            values = np.zeros(shape, self.dtype)
        else:
            values = data.get_orthogonal_selection((*lead, rows, cols)).astype(self.dtype)
            planes = np.ravel_multi_index(np.ix_(*lead), self.full[:-2]) if lead else np.zeros((), int)
            block_rows, block_cols = data.chunks[-2:]  # a chunk is a block (or the whole side)
            mask = done[planes[..., None, None], (rows // block_rows)[:, None], (cols // block_cols)[None, :]]
            values = np.where(mask, values + 1 if self.painted else values, 0).astype(self.dtype)
        squeeze = tuple(i for i, a in enumerate(axes) if np.ndim(a) == 0)
        return values.reshape(shape).squeeze(axis=squeeze) if squeeze else values.reshape(shape)


def default_store(source: str) -> Path:
    """A new store in a temporary folder, named after the image layer."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in source) or "image"
    return Path(tempfile.mkdtemp(prefix="cellprep-")) / f"{safe}.zarr"


def store_layers(
    store: Path, source: str, info: ModelInfo, shape: Sequence[int], show: Collection[str],
    levels: Sequence[int], geometry: dict[str, tuple[float, ...]], precision: str,
) -> list[LayerData]:
    """Lazy layers over ``store``: the ensemble labels, and the disagreement map if shown; a
    pyramid (subsampled by ``levels``) when the input is one. Their markers record the store and
    the ``precision`` its blocks are predicted in."""

    def pyramid(name: str, dtype: Any, painted: bool) -> Any:
        views = [StoreView(store, name, shape, dtype, painted, step) for step in levels]
        return views if len(views) > 1 else views[0]

    def meta(name: str, output: str, **kwargs: Any) -> dict[str, Any]:
        marker = {"source": source, "output": output, "store": str(store), "precision": precision}
        return {"name": layer_prefix(source) + name, "metadata": {MARKER: marker}, "multiscale": len(levels) > 1,
                **geometry, **kwargs}

    dtype = labels_dtype(info.config.num_classes)
    features = {"index": np.arange(info.config.num_classes) + 1, "class": list(info.class_names)}
    layers = [(pyramid("labels", dtype, True), meta("ensemble", "ensemble", colormap=class_colormap(info.class_colors),
                                                     features=features), "labels")]
    if "disagreement" in show and info.config.num_outputs > 1:
        data = pyramid("disagreement", np.float32, False)
        layers.append((data, meta("disagreement", "disagreement", colormap="inferno", contrast_limits=(0.0, 1.0)),
                       "image"))
    return layers


def pyramid_steps(layer: Any) -> list[int]:
    """Subsampling of each pyramid level of a multiscale layer ([1] for one level)."""
    if not layer.multiscale:
        return [1]
    width = -2 if layer.rgb else -1
    base = layer.data[0].shape[width]
    return [max(1, round(base / level.shape[width])) for level in layer.data]


def zarr_segment_job(
    registry: ModelRegistry, entry: ModelEntry, data: Any, store: Path, *, source: str, rgb: bool, tile: int,
    device: str, precision: str, show: Collection[str], threads: int | None = None, inputs: Collection[str] = (),
) -> Generator[Progress, None, Path]:
    """Predict ``data`` block by block into ``store`` on ``device`` (``"auto"``: as in memory, the best
    one) in ``precision`` (in the dock's worker thread); ``inputs``: the files ``data`` was read from,
    which the store must keep apart from."""
    with gui_job(threads):
        loaded = registry.load(entry)
        outputs = ("disagreement",) if "disagreement" in show else ()
        return (yield from predict_to_zarr_iter(
            loaded, [("", ImageSource(data, source), None)], store, rgb=rgb, tile=tile, overlap=tile // 4,
            outputs=outputs, precision=precision, executor=LocalExecutor(device), inputs=inputs,
        ))
