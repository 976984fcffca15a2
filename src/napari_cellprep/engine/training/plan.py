"""What a training run trains, for every face: the settings it starts from, the model it trains
(new, or fine-tuned by the fine-tune rule) and how the fine-tuned weights are carried over."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ...model import ModelConfig, SegmentationNet
from ..checkpoint import LoadedModel, ModelInfo, check_class_names
from ..errors import SettingsError
from ..images.normalize import Normalization
from .data import LabeledImage

LR_SCHEDULES = ("constant", "cosine")
DEFAULT_VAL_FRACTION = 0.2
"""Share of the labeled pixels held out for validation (in blocks) when no validation set is given."""


@dataclass
class TrainConfig:
    """Optimisation settings, the same defaults in the library, the CLI and the Train dock.

    Adam with the paper's betas (0.9, 0.999) and learning rate 1e-3 on 256² patches; batch 8,
    not the paper's 16: the product trains mostly on CPUs, where a step of 8 patches takes half
    the time and memory, and the bundled model was trained with 8 (``benchmarks/reproduce.py``
    sets the paper's values itself). ``steps_per_epoch=None`` is about one pass over the labeled
    area. ``amp`` (mixed precision) applies on CUDA only. ``seconds`` is a wall-clock budget
    counted from the first step: once spent, the epoch under way ends early (and is scored)
    and training ends normally, keeping the best model (``None``: no budget). ``freeze_norm``
    first re-estimates every BatchNorm layer's statistics on a few batches of the training
    patches (AdaBN: the new image is normalised as the model's own), then keeps them fixed
    while training (scale and shift still learned): fine-tuning on a few strokes then neither
    drifts the statistics the eval-mode preview uses nor depends on tiny batches.
    ``adapt_norm`` re-estimates them the same way before the first step but does not freeze
    them: the adapted model is shown at once (``NormAdapted``) and training goes on as usual.
    ``refresh_norm`` re-estimates them again at the end of every epoch, before the epoch's model
    is scored, kept or previewed (training itself normalises by batch statistics, so only the
    eval-mode model changes): the running averages otherwise lag behind weights that fine-tuning
    moves fast, and the eval-mode model can collapse while training goes well.
    ``select_on_strokes``: without validation data, score each epoch on the training labels
    themselves (eval mode, as the preview runs; each pixel counted by its loss weight, so a
    correction as the loss counts it) and keep an epoch only when it fits them at least
    as well as the best so far, so that a shown preview never gets worse on what was painted.
    ``fresh_learning_rate``: when fine-tuning, the parameters not copied from the starting model
    (new heads after a change of class count) learn at this rate (``None``: ``learning_rate``).
    ``fit_heads``: when fine-tuning leaves heads fresh, first fit them alone to the painted pixels
    with the rest of the model fixed (``engine.head_fit``; after AdaBN when ``adapt_norm``).
    ``cpu_bfloat16``: on a CPU that computes bfloat16 in hardware (``devices.cpu_has_native_bfloat16``),
    each training step's forward pass runs under bfloat16 autocast (weights, gradients and the
    optimizer stay float32; validation stays float32, the dock's live preview follows the steps);
    elsewhere it does nothing.
    ``average_weights`` d in (0, 1): each epoch's model (scored, previewed, kept) is an exponential
    moving average of the weights over the steps so far (after every step, average ← d·average +
    (1 − d)·weights; its BatchNorm statistics refreshed when ``refresh_norm``, else copied), which
    smooths the epoch-to-epoch swings of a few noisy steps (0: off, the last weights).
    ``fit_copied_heads`` (with ``fit_heads``): fit the heads copied from the starting model too, so
    that a model fine-tuned into another task with the same class count starts from heads fitted to
    its strokes rather than to the old task.
    ``filter_decorrelation`` D > 0 (not in the paper; CellPrep models only): D × the mean squared
    correlation of each pair of translation filters over each patch's pixels
    (``model.loss.filter_correlation``) is added to Eq. 1, so that the filters cannot all become
    one map (as the product's did on vnc-em; ``docs/results/results.md``) (0: Eq. 1 alone).
    """

    epochs: int = 50
    batch_size: int = 8
    learning_rate: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    patch_size: int = 256
    steps_per_epoch: int | None = None
    augment: bool = True
    lr_schedule: str = "constant"  # or "cosine"
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # CUDA only
    seconds: float | None = None
    freeze_norm: bool = False
    adapt_norm: bool = False
    refresh_norm: bool = False
    fresh_learning_rate: float | None = None
    fit_heads: bool = False
    fit_copied_heads: bool = False
    cpu_bfloat16: bool = False
    average_weights: float = 0.0
    select_on_strokes: bool = False
    filter_decorrelation: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patch_size"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise SettingsError(f"steps_per_epoch must be at least 1 (or None), got {self.steps_per_epoch}")
        for name in ("learning_rate", "fresh_learning_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SettingsError(f"{name} must be positive, got {value}")
        if self.seconds is not None and not self.seconds > 0:
            raise SettingsError(f"the time budget must be positive, got {self.seconds} s")
        if not self.filter_decorrelation >= 0 or math.isinf(self.filter_decorrelation):
            raise SettingsError(
                f"filter_decorrelation must be 0 (off) or positive, got {self.filter_decorrelation}"
            )
        if not 0.0 <= self.average_weights < 1.0:
            raise SettingsError(
                f"average_weights must be 0 (off) or a decay below 1 (e.g. 0.9), got {self.average_weights}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise SettingsError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")


FINE_TUNE_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "patch_size": 128,
    "batch_size": 4,
    "steps_per_epoch": 10,
    "adapt_norm": True,
    "refresh_norm": True,
    "select_on_strokes": True,
    "fit_heads": True,
    "cpu_bfloat16": True,
}
"""Where fine-tuning a trained model departs from ``TrainConfig``'s defaults (training afresh).
Measured in ``benchmarks/scribbles.py`` (docs/results/archive/scribbles-v1.md, variant ``p128-noval-lr1e-4``,
the same image and strokes per case, the previous bundled model, a shared CPU): fine-tuning from 60
strokes with lr 1e-4, 128² patches, 5 steps per epoch and no held-out strokes beat the former
settings (lr 1e-3, 256², about one pass, 20% held out) at 60 s in all four cases tried (nist-phase
clean 0.966 vs 0.953, very low light 0.903 vs 0.745, ISBI 2012 very low light 0.537 vs 0.459,
vnc-em very low light 0.346 vs 0.187), at 30 s in three (not clean nist-phase: 0.925 vs 0.953)
and at 120 s in three (not ISBI: 0.567 vs 0.605). lr 1e-3 wrecked the pretrained weights within
a few steps, and the best-by-held-out-strokes pick hid better models. One image per case.
``learning_rate`` 1e-3 (docs/results/variants/scribbles/learning-rate.md, the bundled model with blur
pooling, AdaBN first and ``refresh_norm``; 1e-4, 3e-4, 1e-3 and 3e-3 on the first image of
nist-phase, ISBI 2012 and vnc-em, clean and very low light): with the norm statistics adapted, 1e-3
no longer wrecks the pretrained weights, and beat 1e-4 in all six cases at 30 s (ISBI 2012 clean
0.667 vs 0.419, very low light 0.623 vs 0.470; nist-phase very low light 0.928 vs 0.845) and at
120 s in five (nist-phase very low light 0.935 vs 0.926, within 0.01); 3e-3 was no better than
1e-3 (0.691/0.626 on ISBI 2012 at 30 s, 0.923 on nist-phase very low light). Fresh heads at 10×
the rate, as before: on vnc-em (2 → 3 classes) 1e-2 gave 0.39/0.35 at 60 s and 0.51/0.39 at 120 s
(clean/very low light) against 0.19/0.27 and 0.41/0.36 at 1e-3; at 30 s 0.18/0.15 against 0.16/0.26.
One image per case.
``fit_heads`` replaced that (docs/results/variants/scribbles/fit-heads.md, vnc-em images 4 and 19): heads
fitted to the strokes before the first step lifted the 30 s preview in every paired case (image 4
clean 0.37 vs 0.14–0.18, very low light 0.37 vs 0.15–0.28; image 19 clean 0.15–0.31 vs 0.02) and
tied at 120 s (0.39–0.57 vs 0.39–0.51). After the fit the heads learn at the rate of the rest
(LP-FT), no faster: 1e-3 against 1e-2 was not distinguishable (−0.17…+0.18 at 30 s, −0.05…+0.11 at
120 s over four cases, two of them slowed by other work).
``cpu_bfloat16`` (docs/results/variants/scribbles/cpu-bfloat16.md; 2 held-out images of each set, clean and
very low light, fine-tuning run beside fine-tuning with float32 on the same images, one core each):
32–70% more steps in 120 s (1.72× faster steps alone: benchmarks/bench_train_step.py); at 30 s higher or equal in 9 of 12 paired
cases (mean +0.027 mIoU; ISBI 2012 +0.00 to +0.09, nist-phase −0.04 to +0.08, vnc-em −0.03 to
+0.04), at 120 s mean +0.020 (vnc-em +0.04 to +0.11). Does nothing on CPUs without bfloat16
hardware, where it would be emulated and slower.
``adapt_norm`` (docs/results/variants/scribbles/adapt-norm.md, the current bundled model, the same four
cases): the first preview came after 1.3–2.0 s instead of 4.8–5.9 s, and scored 0.848 instead of
nothing at 5 s and 0.878 instead of 0.393 at 15 s on very-low-light nist-phase, with 30/120 s
scores equal or better on three cases and within 0.02 on ISBI 2012 clean.
``fresh_learning_rate`` (the from-scratch rate for the heads that a change of class count leaves
new): fine-tuning the 2-class bundled model into vnc-em's 3 classes stayed at mIoU 0.10–0.17 for
120 s with every parameter at 1e-4; with it and frozen norms 0.433 at 120 s on one image
(docs/results/variants/scribbles/frozen-freshlr.md), but with it alone (docs/results/archive/scribbles-v3.md)
still 0.06–0.25: not a measured gain; it was kept because fresh heads at the pretrained rate barely
moved, and is now an option only (``fit_heads`` above replaced it).
Two-class fine-tuning copies every parameter, so it is unchanged.
``refresh_norm`` (the bundled model with blur pooling; 100 steps of the dock's settings, each epoch's
model scored on the whole image with and without the refresh, one image per case): nist-phase low
light, image 95 (where the preview had collapsed to 0.20) 0.81/0.73/0.85/0.86/0.92/0.85/0.90 instead of
0.59/0.55/0.47/0.56/0.79/0.83/0.82 at epochs 1/2/5/8/12/16/20; vnc-em 0.27 instead of 0.17 at
epoch 20; ISBI 2012 within −0.05…+0.06 (0.59 vs 0.61 at epoch 20); nist-phase very low light,
image 20, −0.04…+0.01, −0.01 on average (docs/results/variants/scribbles/refresh-norm.md). Frozen norms after
AdaBN (``freeze_norm``) were mixed in that run (better on one nist-phase image, worse on the other), so
they stay an option.
``batch_size`` 4 with 10 ``steps_per_epoch`` (docs/results/variants/scribbles/b4x10.md; 2 held-out images of
nist-phase, ISBI 2012 and vnc-em, clean and very low light, the defaults then batch 8 × 5 steps in
the same run): each epoch sees the same pixels in twice the updates, 2.1–2.3× the steps in 120 s,
the first preview earlier in all 12 cases (0.8–4.6 s against 1.7–6.3 s). Paired over the 12
cases: +2.6 mIoU points [+0.1, +5.0] at 30 s; +3.2 at 15 s, +2.2 at 60 s, +1.7 at 120 s, not
distinguishable (ISBI 2012 and vnc-em higher at 30 s in 7 of 8 cases; one nist-phase very low
light image fell to 0.59/0.56 at 60/120 s against 0.80/0.79). At low light, in a second run after
the change (docs/results/variants/scribbles/b4x10-low-light.md, the same 6 images): +1.1 [−4.9, +7.0] at
30 s, +3.0 [−1.6, +7.7] at 120 s, not distinguishable; vnc-em 0.415 against 0.354 at 30 s, ISBI
2012 0.597 against 0.625.
``select_on_strokes`` from the first round on (it had been a rule of later rounds only): an epoch
is kept and shown only when it fits the painted pixels at least as well as the adapted starting
model and the epochs kept before it. Step-based, it calms the preview
(docs/results/variants/scribbles/preview-stability.md; 25 epochs, 4 cases). The mean over epochs 4–25
rose in all four cases (+0.122, +0.035, +0.022, +0.009), and the change between epochs fell 2–48×
(nist-phase image 95 at very low light: 0.143 → 0.003). In the main table (docs/results/scribbles.md,
against the table before it, both alone on the machine, the same 18 cases), it was not
distinguishable at any budget: +1.2 points [−2.1, +4.6] at 30 s, +2.1 [−2.0, +6.2] at 120 s,
−3.1 [−6.4, +0.2] at 5 s, where the adapted start stays on screen longer. Scoring the strokes
costs 10–28% of the steps in 120 s on 512² images. It was adopted for the calmer preview."""

FINE_TUNE_VAL_FRACTION = 0.0
"""Fine-tuning holds out no strokes by default: each epoch is scored on the strokes themselves
(``select_on_strokes``)."""


CONTINUE_DEFAULTS: dict[str, Any] = {
    "average_weights": 0.9,
}
"""Where a further round of fine-tuning departs from ``FINE_TUNE_DEFAULTS``: the model being
fine-tuned was itself fine-tuned on the same image (``continues_fine_tuning``), as when the Train
dock is pressed again after correcting its result. Such a model already fits the image, so each epoch's model is
a moving average of the weights (``average_weights``). As in every round (``select_on_strokes``), it
is kept only when it fits the painted labels, old and new, at least as well as the model the round
started from and the epochs before it: a round never hands back a model that paints worse on what
was painted. The measurement below chose both for later rounds, before the first round took
the selection too.
Measured in the rounds of ``benchmarks/scribbles.py`` (docs/results/variants/scribbles/later-rounds.md;
nist-phase and ISBI 2012 at very low light, 2 images each, random strokes and the cue's squares):
no mIoU difference distinguishable from continuing with the first round's settings, but the worst
drop from one round to the next fell from 0.158 to 0.059 on nist-phase (4 rounds of 20 more
than 0.02 worse, against 6) and from 0.016 to 0.008 on ISBI 2012; either change alone did less
(averaging 0.083, selection 0.156)."""


def continues_fine_tuning(init: LoadedModel | None, items: Sequence[LabeledImage]) -> bool:
    """Whether training ``items`` from ``init`` is a further round of fine-tuning on the same data:
    ``init`` was itself fine-tuned (its training record names the model it started from), on at
    least one of these images (the record's ``image_digests``, ``LabeledImage.digest``). A
    fine-tuned model taken to a new image starts as a first round does."""
    if init is None or not init.info.training.get("fine_tuned_from"):
        return False
    return not set(init.info.training.get("image_digests") or ()).isdisjoint(item.digest() for item in items)


def training_settings(fine_tune: bool, *, continuing: bool = False, **given: Any) -> TrainConfig:
    """The settings of a run: ``TrainConfig``'s defaults, ``FINE_TUNE_DEFAULTS`` on top when
    fine-tuning, ``CONTINUE_DEFAULTS`` on top of those when ``continuing`` (the model fine-tuned
    was itself fine-tuned on the same image: ``continues_fine_tuning``), then what the user
    ``given``."""
    rules = {**FINE_TUNE_DEFAULTS, **(CONTINUE_DEFAULTS if continuing else {})} if fine_tune else {}
    return TrainConfig(**{**rules, **given})


def default_val_fraction(fine_tune: bool) -> float:
    """Share of the painted pixels held out for validation when the user does not say."""
    return FINE_TUNE_VAL_FRACTION if fine_tune else DEFAULT_VAL_FRACTION


def normalization_for(init: LoadedModel | None, method: str | None = None) -> Normalization:
    """The normalisation a run trains with: ``method`` when given, else the model being
    fine-tuned keeps its own, else min-max (the paper's)."""
    if method is not None:
        return Normalization(method)
    return init.info.normalization if init is not None else Normalization()


def model_to_train(
    num_classes: int,
    in_channels: int,
    *,
    init: LoadedModel | None = None,
    class_names: Sequence[str] | None = None,
    architecture: Mapping[str, Any] | None = None,
    normalization: Normalization | None = None,
    name: str = "",
) -> ModelInfo:
    """The description of the model a run trains.

    A new model (``init`` None) is ``ModelConfig(num_classes, in_channels, **architecture)``.
    Fine-tuning ``init`` (the fine-tune rule) keeps its architecture and (unless given,
    ``normalization_for``) its normalisation; the
    class count may change: a penultimate layer narrower than the new count becomes C wide,
    the class-dependent weights start afresh (``transfer_weights``), and names and colours are
    new; with the same count they are kept. ``class_names`` (one per class) rename the classes;
    without them a new class k is ``class k``.
    """
    if init is None:
        known = [f.name for f in fields(ModelConfig) if f.name not in ("num_classes", "in_channels")]
        unknown = sorted(set(architecture or {}) - set(known))
        if unknown:
            raise SettingsError(f"{unknown[0]!r} is not an architecture setting; choose from {', '.join(known)}")
        try:
            config = ModelConfig(num_classes=num_classes, in_channels=in_channels, **(architecture or {}))
        except (TypeError, ValueError) as exc:
            raise SettingsError(str(exc)) from exc
        colors: list[str] = []
    else:
        if architecture:
            raise SettingsError(
                f"{next(iter(architecture))} cannot be set when fine-tuning: a fine-tuned model keeps the "
                f"architecture of the model it starts from"
            )
        base = init.info.config
        if in_channels != base.in_channels:
            raise SettingsError(
                f"the images have {in_channels} channel(s) but {init.label!r} takes {base.in_channels}"
            )
        wide_enough = base.penultimate is None or base.penultimate >= num_classes
        try:
            config = ModelConfig(
                **{
                    **base.to_dict(),
                    "num_classes": num_classes,
                    "penultimate": base.penultimate if wide_enough else None,
                }
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
        same_classes = num_classes == base.num_classes
        colors = list(init.info.class_colors) if same_classes else []
        if class_names is None and same_classes:
            class_names = init.info.class_names
    names = list(class_names) if class_names is not None else [f"class {k}" for k in range(num_classes)]
    if len(names) != num_classes:
        raise SettingsError(
            f"{len(names)} class names given for {num_classes} classes; give one name per class"
        )
    check_class_names(names)
    return ModelInfo(config, names, normalization or normalization_for(init), colors, name=name)


HEADS = ("head.", "head1.", "head2.", "ensemble")
"""Name prefixes of the parameters whose shapes follow the class count: the heads and the ensemble."""


def _class_dependent(name: str, config: ModelConfig) -> bool:
    heads = HEADS
    if config.penultimate_width == config.num_classes:
        heads += ("penultimate.",)
    return name.startswith(heads)


def transfer_weights(model: SegmentationNet, init: LoadedModel) -> list[str]:
    """Copy ``init``'s weights into ``model`` by the fine-tune rule; return the copied names.

    Every tensor whose name and shape match is copied. When the class count differs, the
    class-dependent tensors (the heads, the ensemble, and network 1's penultimate layer when its
    width equals the class count) keep their fresh initialisation even where shapes happen to
    match. Architecture and backbone must match.
    """
    old, new = init.info.config, model.config
    for name in ("architecture", "backbone"):
        if getattr(old, name) != getattr(new, name):
            raise SettingsError(
                f"cannot fine-tune a {getattr(old, name)} model into a {getattr(new, name)} one "
                f"({name} differs); train from scratch instead"
            )
    state = model.state_dict()
    classes_changed = old.num_classes != new.num_classes
    copied = []
    for name, tensor in init.model.state_dict().items():
        if name in state and state[name].shape == tensor.shape:
            if not (classes_changed and _class_dependent(name, new)):
                state[name] = tensor.detach().clone()
                copied.append(name)
    model.load_state_dict(state)
    return copied
