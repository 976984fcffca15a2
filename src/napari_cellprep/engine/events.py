"""Typed progress events that the long-running engine generators yield."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .checkpoint import LoadedModel

R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """Generic progress: ``done`` of ``total`` units, with a short message."""

    done: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class StepEnd:
    """One optimisation step finished. ``losses`` maps output name → loss (branches, ensemble)."""

    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float
    losses: dict[str, float]
    elapsed: float


@dataclass(frozen=True)
class EpochEnd:
    """One epoch finished, with validation scores when there is validation data; ``best_model``
    is this epoch's model (a copy, eval mode) when it improved on the best so far. ``scored_on``:
    what the ``val_*`` scores measure, ``"validation"`` data or, without any (``select_on_strokes``),
    the ``"painted"`` training labels themselves."""

    epoch: int
    epochs: int
    train_loss: float
    losses: dict[str, float]
    elapsed: float
    val_iou: list[float] | None = None
    val_dice: list[float] | None = None
    val_miou: float | None = None
    val_mdice: float | None = None
    best_miou: float | None = None
    best_epoch: int | None = None
    improved: bool = False
    scored_on: str = "validation"
    ensemble_weights: list[float] = field(default_factory=list)
    best_model: LoadedModel | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class NormAdapted:
    """Before the first step, the normalisation statistics were re-estimated on the training
    images (AdaBN); ``model`` is the adapted starting model (a copy, eval mode)."""

    model: LoadedModel = field(repr=False, compare=False)


def drive(steps: Generator[Any, None, R], callback: Callable[[Any], None] | None = None) -> R:
    """Run an engine generator to the end, passing each event to ``callback``; return its result."""
    while True:
        try:
            event = next(steps)
        except StopIteration as finished:
            return finished.value
        if callback is not None:
            callback(event)
