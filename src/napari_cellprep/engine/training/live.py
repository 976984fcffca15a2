"""The Train dock's compute path (no Qt): painted layers to training data, and the run of a
``RunPlan`` with an optional live preview, run by the dock in a ``thread_worker``."""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from ..devices import cpu_bfloat16_applies
from ..events import EpochEnd, NormAdapted, StepEnd
from ..images.labels import LabelKind
from ..images.normalize import Normalization
from ..prediction.inference import predict
from ..threads import gui_job
from .data import LabeledImage
from .loop import TrainingResult
from .recipe import LabeledInput, RunPlan, input_items

PREVIEW_SIZE = 512
"""The live preview segments at most this many pixels square of one plane, after every epoch."""


def painted_items(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    rgb: bool,
    in_channels: int,
    normalization: Normalization,
    class_names: Sequence[str],
    channel_axis: int | None = None,
    name: str = "image",
    predicted: np.ndarray | None = None,
) -> list[LabeledImage]:
    """Training items from an Image layer's data and a Labels layer over it (painted values),
    one per plane that holds labels (``recipe.input_items``). ``predicted``: the values a
    segmentation layer had as predicted; the pixels painted differently since are corrections,
    weighted by ``engine.labels.correction_weights``."""
    given = LabeledInput(image, labels, name, rgb, predicted)
    return input_items(given, LabelKind.PAINTED, normalization, in_channels, channel_axis, class_names)


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
    """The model of the best epoch so far (epoch 0: the adapted starting model), run on the
    preview image."""

    labels: np.ndarray  # (h, w) class indices
    epoch: int


def training_job(
    plan: RunPlan,
    *,
    stop: threading.Event | None = None,
    preview: np.ndarray | None = None,
    preview_channel_axis: int | None = None,
    threads: int | None = None,
) -> Generator[NormAdapted | StepEnd | EpochEnd | PreviewReady, None, TrainingResult]:
    """The run of ``plan`` (``RunPlan.train_iter``), plus a ``PreviewReady`` after each epoch that
    improved (and after ``NormAdapted``, as epoch 0) when ``preview`` (one plane, as the model
    takes it) is given, on ``threads`` torch threads (``None``: unchanged).
    The preview runs the improved epoch's model that ``train_iter`` hands out (in bfloat16 where
    ``config.cpu_bfloat16`` applies, as the steps do); the returned
    model lives in memory only (``path`` None)."""
    with gui_job(threads):
        return (yield from _training_job(plan, stop, preview, preview_channel_axis))


def _training_job(plan, stop, preview, preview_channel_axis):
    events = plan.train_iter(stop=stop)
    while True:
        try:
            event = next(events)
        except StopIteration as end:
            return end.value
        yield event
        if isinstance(event, NormAdapted):
            shown, epoch = event.model, 0
        else:
            shown, epoch = (event.best_model, event.epoch) if isinstance(event, EpochEnd) else (None, None)
        if preview is not None and shown is not None and not (stop is not None and stop.is_set()):
            device = next(shown.model.parameters()).device
            precision = "bfloat16" if cpu_bfloat16_applies(plan.config.cpu_bfloat16, device) else "float32"
            labels = predict(
                shown, preview, channel_axis=preview_channel_axis, outputs=(), precision=precision
            ).labels
            yield PreviewReady(labels, epoch)
