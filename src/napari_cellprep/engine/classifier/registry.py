"""The classifier kinds by name: fitting one on painted strokes, rebuilding one from its state."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .features import feature_names as default_names
from .forest import ForestClassifier, ForestSettings
from .mlp import MLPClassifier, MLPSettings
from .state import ClassifierState, PixelClassifier, painted_pixels

CLASSIFIERS = {"forest": (ForestClassifier, ForestSettings), "mlp": (MLPClassifier, MLPSettings)}
"""Kind → (class, settings), as ``ClassifierState.meta["kind"]`` names it."""
REFERENCE_PIXELS = 1 << 16
"""Pixels of the whole images that set the perceptron's feature scaling."""


def fit_classifier(features: torch.Tensor | Sequence[torch.Tensor], labels, num_classes: int, *,
                   kind: str = "forest", feature_names: Sequence[str] | None = None, **settings) -> PixelClassifier:
    """Fit a classifier of ``kind`` on the painted pixels of one or several feature images
    (F, H, W) and their painted labels (H, W) (0 = not painted, k = class k−1); ``settings``
    override the kind's defaults (``ForestSettings``, ``MLPSettings``)."""
    if kind not in CLASSIFIERS:
        raise ValueError(f"unknown classifier kind {kind!r}; choose from {sorted(CLASSIFIERS)}")
    cls, settings_cls = CLASSIFIERS[kind]
    x, y = painted_pixels(features, labels)
    names = list(feature_names) if feature_names is not None else default_names(1)[: x.shape[1]]
    if len(names) != x.shape[1]:
        raise ValueError(f"{len(names)} feature names for {x.shape[1]} features")
    extra = {"reference": pixel_sample(features)} if kind == "mlp" else {}
    return cls.fit(x, y, num_classes, names, settings_cls(**settings), **extra)


def pixel_sample(features: torch.Tensor | Sequence[torch.Tensor], count: int = REFERENCE_PIXELS) -> torch.Tensor:
    """(≤ count, F): an evenly strided sample of the pixels of feature images (F, H, W)."""
    images = [features] if isinstance(features, torch.Tensor) and features.ndim == 3 else list(features)
    flat = torch.cat([image.reshape(image.shape[0], -1) for image in images], 1)
    return flat[:, :: max(1, flat.shape[1] // count)].T.float()


def classifier_from_state(state: ClassifierState) -> PixelClassifier:
    """Rebuild a fitted classifier from its stored state (our code only, no pickle)."""
    kind = state.meta.get("kind")
    if kind not in CLASSIFIERS:
        raise ValueError(f"unknown classifier kind {kind!r}; known: {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[kind][0].from_state(ClassifierState({k: np.asarray(v) for k, v in state.arrays.items()},
                                                           dict(state.meta)))
