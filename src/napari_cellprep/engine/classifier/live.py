"""The live pixel classifier of one view: its features computed once, refitted after every stroke
(ilastik's live update), so the first answer comes within about a second of the first stroke."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .fast import FastClassifier, fit_fast
from .features import SCALES, pixel_features


class LiveFit:
    """A normalised plane (Cin, h, w) and its features; ``refit`` fits the classifier to the
    painted values on it (0 = not painted, k = class k − 1) and labels the whole plane."""

    def __init__(self, plane: np.ndarray, num_classes: int, scales: Sequence[float] = SCALES) -> None:
        started = time.perf_counter()
        self.plane = np.asarray(plane, np.float32)
        self.num_classes = num_classes
        self.features = pixel_features(self.plane, scales)
        self.scales = tuple(scales)
        self.feature_seconds = time.perf_counter() - started
        self.classifier: FastClassifier | None = None

    def refit(self, painted: np.ndarray) -> np.ndarray | None:
        """Class labels (h, w) of the plane by a classifier fitted to ``painted``; ``None`` until
        two classes are painted (nothing to tell apart yet)."""
        painted = np.asarray(painted)
        present = np.unique(painted[(painted > 0) & (painted <= self.num_classes)])
        if present.size < 2:
            return None
        target = np.where((painted > 0) & (painted <= self.num_classes), painted.astype(np.int64) - 1, -1)
        self.classifier = fit_fast([self.plane], [target], self.num_classes, features=[self.features],
                                   scales=self.scales)
        return self.classifier.probabilities(self.plane, features=self.features).argmax(axis=0)
