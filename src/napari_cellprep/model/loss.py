"""Eq. 1 of Kato & Hotta: cross-entropy of every output plus that of the ensemble; the optional
self-supervised Noise2Void term (blind-spot masking and its loss) for a model's denoise head; and
the optional filter-decorrelation term that keeps the translation filters apart."""

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


N2V_FRACTION = 0.015
"""Share of each image's pixels that Noise2Void masking replaces (DenoiSeg: 1.5 %)."""
N2V_RADIUS = 2
"""Replacements come from the (2·radius + 1)² window around a pixel, the pixel itself excluded (5×5)."""


def n2v_mask(
    x: torch.Tensor,
    fraction: float = N2V_FRACTION,
    radius: int = N2V_RADIUS,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blind-spot masking (Krull et al. 2019, Noise2Void; as DenoiSeg trains): in each image of
    the batch ``x`` (B, Cin, H, W), ``round(fraction · H · W)`` distinct pixels (at least one) get
    the values, every channel, of a random other pixel of the window around them (an offset
    pointing outside the image is mirrored). Returns the masked copy and the (B, H, W) mask of the
    replaced pixels. ``generator`` (a CPU one) makes the draw repeatable.
    """
    batch, _, height, width = x.shape
    count = max(1, round(fraction * height * width))
    chosen = torch.rand(batch, height * width, generator=generator).argsort(dim=1)[:, :count]
    rows, cols = chosen // width, chosen % width
    span = range(-radius, radius + 1)
    offsets = torch.tensor([(dy, dx) for dy in span for dx in span if dy or dx])
    shift = offsets[torch.randint(len(offsets), (batch, count), generator=generator)]

    def neighbour(index: torch.Tensor, step: torch.Tensor, size: int) -> torch.Tensor:
        moved = index + step
        return torch.where((moved < 0) | (moved >= size), index - step, moved).clamp(0, size - 1)

    source_rows, source_cols = neighbour(rows, shift[..., 0], height), neighbour(cols, shift[..., 1], width)
    image = torch.arange(batch)[:, None].expand(batch, count)
    image, rows, cols, source_rows, source_cols = (
        t.to(x.device) for t in (image, rows, cols, source_rows, source_cols)
    )
    masked = x.clone()
    masked[image, :, rows, cols] = x[image, :, source_rows, source_cols]
    mask = torch.zeros(batch, height, width, dtype=torch.bool, device=x.device)
    mask[image, rows, cols] = True
    return masked, mask


def self_supervised_loss(output: ModelOutput, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Noise2Void's loss: the mean squared error between the denoise head's output (of the masked
    input) and the ``original`` input (B, Cin, H, W), at the masked pixels (``mask`` (B, H, W))
    only, every channel; labels play no part."""
    if output.denoised is None:
        raise ValueError("the model has no denoise head: build it with ModelConfig(denoise_head=True)")
    error = (output.denoised.float() - original.float()).square()
    return error.permute(0, 2, 3, 1)[mask].mean()


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
