"""Eq. 1 of Kato & Hotta: cross-entropy of every output plus that of the ensemble; and the optional
filter-decorrelation term that keeps the translation filters apart."""

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


def pairwise_correlations(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pearson correlation of each pair (i < j, in ``torch.triu_indices`` order) of the C maps of
    each image (``maps`` (B, C, H, W)), over its pixels: (B, C(C-1)/2), computed in at least float32.
    A constant map (norm below ``eps``) correlates 0 with anything."""
    batch, count = maps.shape[:2]
    f = maps.reshape(batch, count, -1).to(torch.promote_types(maps.dtype, torch.float32))
    f = f - f.mean(dim=2, keepdim=True)
    f = f / f.square().sum(dim=2, keepdim=True).sqrt().clamp_min(eps)
    r = f @ f.transpose(1, 2)  # (B, C, C)
    pairs = torch.triu_indices(count, count, 1, device=maps.device)
    return r[:, pairs[0], pairs[1]]


def filter_correlation(filters: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean squared Pearson correlation of each pair of translation filters over the pixels of
    each image (``filters`` (B, C, H, W), C ≥ 2), averaged over pairs and images: 0 when the
    filters are linearly unrelated, 1 when they are one map (or one map's negative). A constant
    filter correlates 0 with anything."""
    if filters.shape[1] < 2:
        raise ValueError(f"a correlation needs at least 2 filters, got {filters.shape[1]}")
    return pairwise_correlations(filters, eps).square().mean()
