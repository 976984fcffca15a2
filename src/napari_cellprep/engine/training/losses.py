"""The loss of a training batch: Eq. 1 with per-pixel weights (corrections count more), and the
optional terms added to it."""

from __future__ import annotations

import numpy as np
import torch

from ...model import IGNORE_INDEX, ModelOutput, SegmentationNet, method_loss
from ...model.loss import filter_correlation, n2v_mask, self_supervised_loss


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
    self_supervised_weight: float = 0.0,
    generator: torch.Generator | None = None,
    decorrelation: float = 0.0,
) -> tuple[torch.Tensor, list[float], ModelOutput]:
    """The loss of one training batch, the parts it reports and the forward pass it came from.

    W = ``self_supervised_weight`` 0: Eq. 1 (``weighted_loss``) of ``model(x)``. W > 0: the batch
    is Noise2Void-masked (``n2v_mask``, drawn from ``generator``), the one forward pass runs on
    the masked batch, and W × ``self_supervised_loss`` (the denoise head against the unmasked
    ``x`` at the masked pixels, labels or not) is added, and reported as a further part.
    D = ``decorrelation`` > 0 adds D × ``filter_correlation`` of the translation filters, reported
    as the last part.
    """
    if self_supervised_weight:
        masked, mask = n2v_mask(x, generator=generator)
        output = model(masked)
    else:
        output = model(x)
    loss, parts = weighted_loss(output, target, weight)
    if self_supervised_weight:
        term = self_supervised_weight * self_supervised_loss(output, x, mask)
        loss, parts = loss + term, [*parts, float(term.detach())]
    if decorrelation:
        if output.filters is None:
            raise ValueError("the model has no translation filters to decorrelate (a plain U-Net)")
        term = decorrelation * filter_correlation(output.filters)
        loss, parts = loss + term, [*parts, float(term.detach())]
    return loss, parts, output
