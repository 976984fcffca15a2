"""Eq. 1 of Kato & Hotta: cross-entropy of every output plus that of the ensemble."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .networks import ModelOutput

IGNORE_INDEX = -1
"""Target value of pixels that carry no label (napari Labels value 0)."""


def method_loss(output: ModelOutput, target: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Sum of per-pixel cross-entropies, unlabeled pixels (``IGNORE_INDEX``) ignored.

    ``target`` is (B, H, W) int64 of class indices. Returns the total and the float loss of
    each branch followed by the ensemble's. For the plain baseline (S = 1, the branch is the
    ensemble) the loss is counted once. A batch with no labeled pixel gives a zero loss.
    """
    if not bool((target != IGNORE_INDEX).any()):
        zero = output.ensemble_logits.sum() * 0.0
        return zero, [0.0] * (output.branch_logits.shape[1] + 1)
    ensemble = F.cross_entropy(output.ensemble_logits.float(), target, ignore_index=IGNORE_INDEX)
    if output.branch_logits.shape[1] == 1:
        value = float(ensemble.detach())
        return ensemble, [value, value]
    branch_losses = [
        F.cross_entropy(output.branch_logits[:, s].float(), target, ignore_index=IGNORE_INDEX)
        for s in range(output.branch_logits.shape[1])
    ]
    total = torch.stack(branch_losses).sum() + ensemble
    return total, [float(v.detach()) for v in branch_losses] + [float(ensemble.detach())]
