"""Fresh heads fitted to the painted pixels before fine-tuning starts (linear probing, then
fine-tuning: Kumar et al. 2022, "Fine-tuning can distort pretrained features").

When fine-tuning changes the class count, the heads and the ensemble start from random weights
while the rest of the model is trained. Gradient steps then spend their first seconds fitting
those few weights, through a trunk that the random heads' errors are already pulling around.
Here the trunk is held fixed and only the fresh class-dependent weights are fitted, with L-BFGS,
to Eq. 1's loss at the labeled pixels of a few batches of training patches: a small problem over
a few hundred numbers on the trunk's maps at those pixels, computed once, after which fine-tuning
starts from heads that already segment.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ...model.loss import IGNORE_INDEX, method_loss
from ...model.networks import SegmentationNet
from .plan import HEADS

FIT_BATCHES = 2
"""Batches of training patches the heads are fitted on."""
FIT_ITERATIONS = 50
"""L-BFGS iterations (each one evaluates only the heads on the stored trunk maps)."""


def fresh_head_parameters(
    model: SegmentationNet, copied: list[str], include_copied: bool = False
) -> list[torch.nn.Parameter]:
    """The head and ensemble parameters (``plan.HEADS``) that fine-tuning did not copy, or all of
    them with ``include_copied`` (none when training afresh, ``copied`` empty)."""
    if not copied:
        return []
    kept = set() if include_copied else set(copied)
    return [p for name, p in model.named_parameters() if name not in kept and name.startswith(HEADS)]


def _at(maps: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
    """A trunk map (B·k, ..., H, W) at the ``labeled`` pixels (B, H, W) of its batch, as one
    image of 1 × N pixels (k, ..., 1, N): the heads are per-pixel, so they give the same logits
    there, and the fit only handles the pixels that count."""
    batch = labeled.shape[0]
    per_image = maps.unflatten(0, (batch, maps.shape[0] // batch)).movedim(0, -3)  # k, ..., B, H, W
    return per_image[..., labeled].unsqueeze(-2)


def fit_heads(
    model: SegmentationNet,
    params: list[torch.nn.Parameter],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    iterations: int = FIT_ITERATIONS,
) -> float | None:
    """Fit ``params`` (class-dependent weights of ``model``) to Eq. 1 on ``batches`` of (images,
    targets) with the trunk fixed (eval mode). Returns the final loss, or None when there was
    nothing to fit (no parameter, or no labeled pixel). The model is left in eval mode."""
    if not params:
        return None
    model.eval()
    stored = []
    with torch.no_grad():
        for x, y in batches:
            labeled = y != IGNORE_INDEX
            if bool(labeled.any()):
                stored.append(({k: _at(v, labeled) for k, v in model.trunk(x).items()}, y[labeled].view(1, 1, -1)))
    if not stored:
        return None
    optimizer = torch.optim.LBFGS(params, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = sum(method_loss(model.heads(trunk), y)[0] for trunk, y in stored) / len(stored)
        loss.backward()
        return loss

    optimizer.step(closure)
    model.zero_grad(set_to_none=True)  # the trunk maps carry no graph; other head weights got gradients
    with torch.no_grad():
        return float(sum(method_loss(model.heads(t), y)[0] for t, y in stored) / len(stored))
