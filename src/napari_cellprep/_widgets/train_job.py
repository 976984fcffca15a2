"""The Train dock's compute path (no Qt): painted layers to training data, and the training
generator with an optional live preview, run by the dock in a ``thread_worker``."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.checkpoint import ModelInfo, load_checkpoint
from ..engine.data import LabeledImage, TrainingDataError, from_painted
from ..engine.events import EpochEnd, StepEnd
from ..engine.inference import predict
from ..engine.normalize import Normalization
from ..engine.training import TrainConfig, TrainingResult, train_iter
from .image_input import model_input
from .threads import torch_threads

PREVIEW_SIZE = 512
"""The live preview segments at most this many pixels square of one plane, after every epoch."""


def label_mapping(class_names: Sequence[str]) -> str:
    """How painted values map to classes, e.g. ``label 1 = background, label 2 = cells``."""
    return ", ".join(f"label {k + 1} = {name}" for k, name in enumerate(class_names))


def painted_items(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    rgb: bool,
    in_channels: int,
    normalization: Normalization,
    class_names: Sequence[str],
    name: str = "image",
    labels_name: str = "labels",
) -> list[LabeledImage]:
    """Training items from an image layer's data and a Labels layer painted over it.

    Painted value v >= 1 is class v-1, 0 is not annotated. A stack (Z/T planes) gives one item
    per plane that holds painted pixels. Raises ``TrainingDataError`` for different shapes or
    no painted pixel.
    """
    array, channel_axis = model_input(image, rgb, in_channels)
    if channel_axis is not None:  # planes below are (H, W, C)
        array, channel_axis = np.moveaxis(array, channel_axis, -1), -1
    spatial = array.shape[:-1] if channel_axis is not None else array.shape
    labels = np.asarray(labels)
    if labels.shape != spatial:
        raise TrainingDataError(
            f"the labels layer {labels_name!r} has shape {labels.shape} but the image {name!r} has "
            f"{spatial}: they must cover the same pixels (select the image, then Layers ▸ New Labels Layer)"
        )
    if not labels.any():
        raise TrainingDataError(
            f"no labels painted in {labels_name!r}: paint some pixels of every class "
            f"({label_mapping(class_names)})"
        )
    items = []
    for index in np.ndindex(spatial[:-2]):
        plane_labels = labels[index]
        if plane_labels.any():
            plane_name = f"{name} plane {index}" if index else name
            items.append(
                from_painted(array[index], plane_labels, normalization, in_channels, channel_axis, plane_name)
            )
    return items


def preview_window(
    shape: tuple[int, int], center: tuple[float, float], size: int = PREVIEW_SIZE
) -> tuple[slice, slice]:
    """At most ``size``² pixels of a plane of ``shape``, centred on ``center`` (row, column)
    where the plane allows."""
    window = []
    for extent, c in zip(shape, center, strict=True):
        length = min(size, extent)
        start = int(np.clip(round(c - length / 2), 0, extent - length))
        window.append(slice(start, start + length))
    return tuple(window)


@dataclass(frozen=True)
class PreviewReady:
    """The model of the best epoch so far, run on the preview image."""

    labels: np.ndarray  # (h, w) class indices
    epoch: int


def training_job(
    train: list[LabeledImage],
    val: list[LabeledImage] | None,
    info: ModelInfo,
    config: TrainConfig,
    *,
    init=None,
    stop: threading.Event | None = None,
    preview: np.ndarray | None = None,
    preview_channel_axis: int | None = None,
    threads: int | None = None,
) -> Generator[StepEnd | EpochEnd | PreviewReady, None, TrainingResult]:
    """``train_iter``, plus a ``PreviewReady`` after each epoch that improved when ``preview`` (one
    plane, as the model takes it) is given, on ``threads`` torch threads (``None``: unchanged).
    The returned model lives in memory only (``path`` None)."""
    with torch_threads(threads):
        return (yield from _training_job(train, val, info, config, init, stop, preview, preview_channel_axis))


def _training_job(train, val, info, config, init, stop, preview, preview_channel_axis):
    if preview is None:
        result = yield from train_iter(train, val, info, config, init=init, stop=stop)
        return result
    with tempfile.TemporaryDirectory(prefix="cellprep-train-") as folder:
        best = Path(folder) / "best.cellprep"
        events = train_iter(train, val, info, config, init=init, stop=stop, checkpoint_path=best)
        while True:
            try:
                event = next(events)
            except StopIteration as end:
                result = end.value
                break
            yield event
            if isinstance(event, EpochEnd) and event.improved and not (stop is not None and stop.is_set()):
                loaded = load_checkpoint(best, "cpu")
                labels = predict(
                    loaded, preview, channel_axis=preview_channel_axis, outputs=(), device=config.device
                ).labels
                yield PreviewReady(labels, event.epoch)
    result.model.path = None
    return result
