"""How an epoch's model is scored during training: as test scoring scores it (tiled prediction,
one confusion matrix), on windows around the labeled pixels of each item."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from ...model import IGNORE_INDEX, SegmentationNet
from ..checkpoint import LoadedModel, ModelInfo
from ..images.metrics import Scores, confusion_matrix, scores
from ..images.normalize import Normalization
from ..prediction.inference import predict_iter
from .data import LabeledImage


class _AsGiven(Normalization):
    """The identity: a ``LabeledImage`` is normalised already (with its whole plane's
    statistics), so the prediction path takes its values as they are instead of normalising
    them a second time."""

    def stats(self, image: np.ndarray) -> tuple[float, float]:
        return 0.0, 1.0

    def apply(self, image: np.ndarray, stats: tuple[float, float] | None = None) -> np.ndarray:
        return np.asarray(image, dtype=np.float32)


VALIDATION_MARGIN = 64
"""Context (pixels) kept around an item's labeled pixels when it is scored: as much as the
default tiling overlap, four times what any tiled pixel is guaranteed at a seam."""


def scoring_windows(
    items: list[LabeledImage], multiple: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(image, target, weight) views of the part of each item that scoring predicts (``weight``:
    the item's per-pixel loss weights, ``None`` for 1 everywhere): the bounding box of
    its labeled pixels grown by ``VALIDATION_MARGIN`` and clipped to the image, its top-left
    corner on a multiple of ``multiple`` (the model's size multiple, so that pooling groups the
    pixels as in a whole-image pass). A fully labeled item is its whole image; sparse strokes on
    a large image cost their neighbourhood only. Items without labels are left out."""
    windows = []
    for item in items:
        labeled = item.target != IGNORE_INDEX
        rows, cols = np.flatnonzero(labeled.any(axis=1)), np.flatnonzero(labeled.any(axis=0))
        if not rows.size:
            continue
        top = max(0, rows[0] - VALIDATION_MARGIN) // multiple * multiple
        left = max(0, cols[0] - VALIDATION_MARGIN) // multiple * multiple
        bottom, right = rows[-1] + 1 + VALIDATION_MARGIN, cols[-1] + 1 + VALIDATION_MARGIN
        weight = None if item.weight is None else item.weight[top:bottom, left:right]
        windows.append((item.image[:, top:bottom, left:right], item.target[top:bottom, left:right], weight))
    return windows


def validation_scores(
    model: SegmentationNet,
    info: ModelInfo,
    windows: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    *,
    amp: bool = False,
    stop: threading.Event | None = None,
) -> Scores | None:
    """Scores of ``model`` on ``windows`` (``scoring_windows``) by the path test scoring takes
    (``engine.evaluation``): tiled prediction (``predict_iter``, its default tile and overlap)
    with one confusion matrix over every labeled pixel, each counted by its loss weight (a
    correction as ``engine.labels.CORRECTION_WEIGHT`` accepted pixels, as the loss counts it). The
    model itself is left as it is (a prepared copy predicts; memory is bounded by the tile).
    ``amp``: float16 autocast (CUDA). ``None`` when ``stop`` is set before a batch of tiles."""
    loaded = LoadedModel(model, replace(info, normalization=_AsGiven()))
    num_classes = info.config.num_classes
    cm = np.zeros((num_classes, num_classes))
    for image, target, weight in windows:
        precision = "float16" if amp else "float32"
        events = predict_iter(loaded, image, channel_axis=0, outputs=(), precision=precision)
        while True:
            if stop is not None and stop.is_set():
                return None
            try:
                next(events)
            except StopIteration as end:
                prediction = end.value
                break
        cm += confusion_matrix(prediction.labels, target, num_classes, weight=weight)
    return scores(cm)
