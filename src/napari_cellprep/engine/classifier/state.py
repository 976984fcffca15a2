"""What every pixel classifier shares: the painted pixels it learns from, its stored state (numpy
arrays and JSON-able metadata, never pickle) and prediction over a feature image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import TrainingDataError


@dataclass
class ClassifierState:
    """A fitted classifier as plain data: ``arrays`` (name → numpy array, e.g. for safetensors)
    and ``meta`` (JSON-able: ``kind``, ``num_classes``, ``feature_names``, the kind's settings)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


class PixelClassifier(Protocol):
    """A classifier of feature vectors, applied to whole feature images in torch."""

    num_classes: int
    feature_names: list[str]

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """(F, H, W) or (B, F, H, W) features → (C, H, W) or (B, C, H, W) class probabilities,
        float32, on the features' device; pixel by pixel, so any tiling gives the same result."""
        ...

    def state(self) -> ClassifierState: ...


def painted_pixels(features: torch.Tensor | Sequence[torch.Tensor],
                   labels: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set of the painted pixels: ``x`` (n, F) float32 and ``y`` (n,) int64 class
    indices 0..C-1, from feature images (F, H, W) (one or a sequence) and their painted labels
    (H, W) (0 = not painted, k = class k−1, as the Train dock's Labels layer)."""
    if isinstance(features, torch.Tensor) and features.ndim == 3:
        features, labels = [features], [labels]
    xs, ys = [], []
    for feature_image, painted in zip(features, labels, strict=True):
        painted = torch.as_tensor(np.asarray(painted) if not isinstance(painted, torch.Tensor) else painted)
        if tuple(painted.shape) != tuple(feature_image.shape[-2:]):
            raise TrainingDataError(f"labels of shape {tuple(painted.shape)} do not fit features of shape "
                                    f"{tuple(feature_image.shape)}")
        painted = painted.to(feature_image.device).long()
        where = painted > 0
        xs.append(feature_image[:, where].T)
        ys.append(painted[where] - 1)
    x, y = torch.cat(xs).float(), torch.cat(ys)
    if y.numel() == 0:
        raise TrainingDataError("no painted pixels: paint at least one stroke of each class")
    return x, y


def as_batch(features: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(B, F, H, W) features and whether the input was a single (F, H, W) image."""
    if features.ndim not in (3, 4):
        raise ValueError(f"expected (F, H, W) or (B, F, H, W) features, got shape {tuple(features.shape)}")
    single = features.ndim == 3
    return (features[None] if single else features), single
