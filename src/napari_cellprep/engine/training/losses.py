"""The loss of a training batch: Eq. 1 with per-pixel weights (corrections count more), and the
optional filter-decorrelation term added to it."""

from __future__ import annotations

import numpy as np
import torch

from ...model import IGNORE_INDEX, ModelOutput, SegmentationNet, method_loss
from ...model.loss import filter_correlation


def weighted_loss(
    output: ModelOutput, target: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, list[float]]:
    """Eq. 1 (``method_loss``) with per-pixel weights: each output's cross-entropy becomes the
    weighted mean over the labeled pixels.

    The pixels of each weight level form a group; ``method_loss`` on a group gives that group's
    mean cross-entropies, and Σ_g w_g·n_g·mean_g / Σ_g w_g·n_g is the weighted mean.
    """
    labeled = target != IGNORE_INDEX
    levels = torch.unique(weight[labeled]) if weight is not None else None
    if levels is None or len(levels) < 2:
        return method_loss(output, target)
    total, parts, mass = 0.0, np.zeros(output.branch_logits.shape[1] + 1), 0.0
    for level in levels:
        group = torch.where(labeled & (weight == level), target, IGNORE_INDEX)
        share = float(level) * int((group != IGNORE_INDEX).sum())
        loss, group_parts = method_loss(output, group)
        total, parts, mass = total + share * loss, parts + share * np.asarray(group_parts), mass + share
    return total / mass, (parts / mass).tolist()


def training_loss(
    model: SegmentationNet,
    x: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    decorrelation: float = 0.0,
) -> tuple[torch.Tensor, list[float], ModelOutput]:
    """The loss of one training batch, the parts it reports and the forward pass it came from:
    Eq. 1 (``weighted_loss``) of ``model(x)``; D = ``decorrelation`` > 0 adds D ×
    ``filter_correlation`` of the translation filters, reported as a further part.
    """
    output = model(x)
    loss, parts = weighted_loss(output, target, weight)
    if decorrelation:
        if output.filters is None:
            raise ValueError("the model has no translation filters to decorrelate (a plain U-Net)")
        term = decorrelation * filter_correlation(output.filters)
        loss, parts = loss + term, [*parts, float(term.detach())]
    return loss, parts, output
