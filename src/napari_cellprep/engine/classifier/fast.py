"""The fast speed: a pixel classifier on fixed multiscale features of the normalised image, fitted
to the painted pixels in about a second, and its share of the ensemble with the network.

A model (``LoadedModel.classifier``) may carry one: prediction then blends the network's ensemble
probabilities ``p_net`` with the classifier's ``p_clf`` as one more branch of the weighted
ensemble, ``softmax((1 − w)·log p_net + w·log p_clf)`` with the classifier's weight ``w`` chosen
on held-out strokes (0: the network alone, 1: the classifier alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import CheckpointError
from ..images.layout import to_planes
from ..images.normalize import Normalization, normalize_channels
from .features import SCALES, feature_names, halo, pixel_features
from .registry import classifier_from_state, fit_classifier
from .state import ClassifierState, PixelClassifier

KIND = "forest"
"""The classifier the loop fits (``registry.CLASSIFIERS``), chosen by ``benchmarks/loop/classifier_choice.py``."""
TILE = 1024
"""Features are computed and classified this many pixels square at a time (with their halo)."""
EPSILON = 1e-4
"""Probabilities are clipped to at least this before their logarithm is blended."""


def blend(network: np.ndarray, classifier: np.ndarray, weight: float) -> np.ndarray:
    """Class probabilities (C, …) of the ensemble of the network's and the classifier's
    probabilities (C, …), the classifier weighted ``weight`` in 0..1 on the log scale."""
    if weight <= 0.0:
        return network
    if weight >= 1.0:
        return classifier
    logits = (1.0 - weight) * np.log(np.maximum(network, EPSILON)) + weight * np.log(
        np.maximum(classifier, EPSILON)
    )
    logits -= logits.max(axis=0, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=0, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class FastClassifier:
    """A fitted pixel classifier, the feature scales it reads and its ensemble weight."""

    classifier: PixelClassifier
    scales: tuple[float, ...] = SCALES
    weight: float = 1.0

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def with_weight(self, weight: float) -> FastClassifier:
        return replace(self, weight=float(weight))

    def probabilities(
        self,
        plane: np.ndarray,
        *,
        features: torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        tile: int = TILE,
    ) -> np.ndarray:
        """(C, H, W) float32 class probabilities of a normalised plane (Cin, H, W), computed tile by
        tile with the features' halo, so any image size costs one tile of features at a time;
        ``features``: the whole plane's, already computed (``pixel_features(plane, scales)``)."""
        if features is not None:
            return self.classifier.predict_proba(features).cpu().numpy()
        plane = np.asarray(plane, np.float32)
        if plane.ndim == 2:
            plane = plane[None]
        _, height, width = plane.shape
        margin = halo(self.scales)
        out = np.empty((self.num_classes, height, width), np.float32)
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                y0, x0 = max(0, top - margin), max(0, left - margin)
                y1, x1 = min(height, top + tile + margin), min(width, left + tile + margin)
                features = pixel_features(plane[:, y0:y1, x0:x1], self.scales, device=device)
                p = self.classifier.predict_proba(features).cpu().numpy()
                h, w = min(tile, height - top), min(tile, width - left)
                out[:, top : top + h, left : left + w] = p[:, top - y0 : top - y0 + h, left - x0 : left - x0 + w]
        return out

    def classify(
        self,
        image: np.ndarray,
        normalization: Normalization,
        in_channels: int,
        *,
        rgb: bool | None = None,
        channel_axis: int | None = None,
    ) -> np.ndarray:
        """(*lead, C, H, W) class probabilities of an image as a model reads it (``engine.images``'
        layout rules and the model's ``normalization``, per plane), without the network."""
        planes, lead = to_planes(image, in_channels, rgb=rgb, channel_axis=channel_axis)
        out = np.stack([self.probabilities(normalize_channels(plane, normalization)) for plane in planes])
        return out.reshape(lead + out.shape[1:])

    def state(self) -> ClassifierState:
        """Arrays and JSON-able metadata (the classifier's, plus scales and weight)."""
        inner = self.classifier.state()
        return ClassifierState(inner.arrays, {**inner.meta, "scales": list(self.scales), "weight": self.weight})

    @classmethod
    def from_state(cls, state: ClassifierState) -> FastClassifier:
        meta = dict(state.meta)
        scales, weight = tuple(float(s) for s in meta.pop("scales")), float(meta.pop("weight"))
        if not 0.0 <= weight <= 1.0:
            raise CheckpointError(f"the pixel classifier's ensemble weight {weight} is not in 0..1")
        try:
            classifier = classifier_from_state(ClassifierState(state.arrays, meta))
        except ValueError as exc:
            raise CheckpointError(str(exc)) from exc
        return cls(classifier, scales, weight)


def fit_fast(
    planes: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    num_classes: int,
    *,
    features: Sequence[torch.Tensor] | None = None,
    scales: Sequence[float] = SCALES,
    kind: str = KIND,
) -> FastClassifier:
    """A classifier of ``kind`` on the features of the normalised ``planes`` (Cin, H, W) fitted to
    ``targets`` (H, W) class indices, −1 = not labeled; ``features``: the planes' features if
    already computed (``pixel_features(plane, scales)``)."""
    if features is None:
        features = [pixel_features(plane, scales) for plane in planes]
    painted = [np.asarray(target) + 1 for target in targets]  # 0 = not painted, k = class k − 1
    channels = np.asarray(planes[0]).shape[0] if np.ndim(planes[0]) == 3 else 1
    names = feature_names(channels, scales)
    return FastClassifier(fit_classifier(list(features), painted, num_classes, kind=kind, feature_names=names),
                          tuple(scales))
