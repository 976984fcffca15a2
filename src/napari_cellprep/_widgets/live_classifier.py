"""The Train dock's live pixel classifier: after every stroke, refit in a worker thread and show
its labels in the preview layer (one refit at a time; strokes made meanwhile are taken by the
next), so the viewer never waits for it."""

from __future__ import annotations

import time

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from qtpy.QtCore import QTimer

from ..engine.checkpoint import ModelInfo
from ..engine.classifier.live import LiveFit
from ..engine.images.layout import model_input
from ..engine.images.normalize import normalize_channels
from ..engine.training.live import PreviewReady
from .image_input import layer_array
from .training_preview import TrainingPreview


def _refit(fit: LiveFit | None, plane: np.ndarray | None, num_classes: int, painted: np.ndarray):
    """Worker: the view's features (once), then the refit; (fit, labels or None, seconds)."""
    started = time.perf_counter()
    if fit is None:
        fit = LiveFit(plane, num_classes)
    return fit, fit.refit(painted), time.perf_counter() - started


DEBOUNCE_MS = 50
"""A stroke's events within this time make one refit, started from the event loop (never from
inside a layer event, where adding the preview layer would upset napari's own handlers)."""


class LiveClassifier:
    """The live classifier of one Train dock, shown in its ``TrainingPreview`` layer."""

    def __init__(self, preview: TrainingPreview, parent) -> None:
        self.preview = preview
        self._timer = QTimer(parent)  # dies with the dock: a pending refit never outlives it
        self.closed = False
        parent.destroyed.connect(self._close)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._run_pending)
        self.fit: LiveFit | None = None
        self.worker = None
        self.pending: tuple | None = None
        self.seconds: float | None = None  # the last refit's time, features included on the first
        self._key: tuple | None = None
        self._window: tuple[slice, ...] = ()

    def refit(self, image: Image, labels: Labels, info: ModelInfo) -> None:
        """Refit to the strokes on ``labels`` in the current view of ``image``: soon, from the
        event loop, or after the refit that is running."""
        if self.closed:
            return
        self.pending = (image, labels, info)
        if self.worker is None:
            self._timer.start()

    def _close(self, *_args) -> None:
        self.closed, self.pending = True, None

    def _run_pending(self) -> None:
        if self.closed or self.worker is not None or self.pending is None:
            return
        (image, labels, info), self.pending = self.pending, None
        key = (id(image), id(labels), info.config.num_classes, info.config.in_channels, info.normalization)
        plane = None
        if key != self._key or not self.preview.shown:
            prepared = self.preview.prepare(image, info, None)
            array = prepared["preview"]
            axis = prepared["preview_channel_axis"]
            view, _ = model_input(array, info.config.in_channels, channel_axis=axis)
            view = view[None] if view.ndim == 2 else np.moveaxis(view, -1, 0)
            plane = normalize_channels(view, info.normalization)
            self.fit, self._key = None, key
            self._window = self._labels_window(labels, array.shape[:2])
        painted = np.asarray(layer_array(labels.data, labels.multiscale))[self._window]
        self.worker = create_worker(_refit, self.fit, plane, info.config.num_classes, painted.copy())
        self.worker.returned.connect(self._show)
        self.worker.finished.connect(self._finished)
        self.worker.start()

    def _labels_window(self, labels: Labels, shape: tuple[int, int]) -> tuple[slice, ...]:
        """The labels' pixels under the preview layer (its plane and rows/columns)."""
        layer = self.preview.layer
        offset = np.round((np.asarray(layer.translate) - np.asarray(labels.translate)) / np.asarray(labels.scale))
        lead = tuple(int(o) for o in offset[:-2])
        top, left = int(offset[-2]), int(offset[-1])
        return (*lead, slice(top, top + shape[0]), slice(left, left + shape[1]))

    def _show(self, result) -> None:
        self.fit, labels, self.seconds = result
        if labels is not None and not self.closed:
            self.preview.show(PreviewReady(labels, 0))

    def _finished(self) -> None:
        self.worker = None
        if self.pending is not None and not self.closed:
            self._timer.start()
