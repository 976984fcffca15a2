"""Training as a generator of progress events, with cancellation, validation and best-model
keeping: ``train_iter`` drives a run through its named phases (adapt, fit heads, then per epoch:
epoch, score, keep)."""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from ...model import ModelConfig, ModelOutput, SegmentationNet, build_model, output_names
from ..checkpoint import LoadedModel, ModelInfo, save_checkpoint
from ..devices import cpu_bfloat16_applies, describe_device, resolve_device
from ..errors import OutputExistsError, SettingsError
from ..events import EpochEnd, NormAdapted, StepEnd, drive
from ..images.labels import check_values
from ..images.metrics import Scores, finite_or_none
from .data import (
    LabeledImage,
    PatchSampler,
    TrainingDataError,
    check_training_data,
    labeled_box_area,
)
from .head_fit import FIT_BATCHES, fit_heads, fresh_head_parameters
from .losses import training_loss
from .plan import TrainConfig, transfer_weights
from .scoring import scoring_windows, validation_scores


@dataclass
class TrainingResult:
    """The outcome of a training run; ``model`` is the best by validation mIoU (by the mIoU on the
    painted labels with ``select_on_strokes``; else the last epoch's without validation), in eval
    mode. ``stopped``: ended by ``stop``; ``out_of_time``: ended by the time budget
    (``TrainConfig.seconds``), a normal end."""

    model: LoadedModel
    stopped: bool
    epochs_run: int
    best_miou: float | None
    best_epoch: int | None
    history: list[EpochEnd] = field(default_factory=list)
    out_of_time: bool = False


def _check_filter_decorrelation(config: TrainConfig, model_config: ModelConfig) -> None:
    if config.filter_decorrelation > 0 and model_config.architecture != "cellprep":
        raise SettingsError(
            f"filter_decorrelation {config.filter_decorrelation:g} needs a CellPrep model (it keeps the "
            f"translation filters apart); a plain {model_config.backbone} has none: set it to 0"
        )


ADAPT_BATCHES = 4
"""Batches of training patches that set the BatchNorm statistics before a frozen-norm run."""

REFRESH_BATCHES = 2
"""Batches of training patches that re-estimate them at each epoch's end (``refresh_norm``)."""


def adapt_batch_norm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm layer's running statistics on ``batches`` (their plain
    average; AdaBN, Li et al. 2016), so that a model moved to a new kind of image normalises it
    as its own; weights are untouched and the model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def freeze_batch_norm(model: torch.nn.Module) -> None:
    """Put every BatchNorm layer of a training model in eval mode (running statistics used, not
    updated); its affine weights still learn."""
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.eval()


def steps_for_one_pass(items: list[LabeledImage], patch_size: int, batch_size: int) -> int:
    """ceil(labeled bounding-box area / (patch² · batch)), at least 1."""
    return max(1, math.ceil(labeled_box_area(items) / (patch_size**2 * batch_size)))


def initial_model(config: ModelConfig, seed: int) -> SegmentationNet:
    """The freshly initialised model ``train`` starts from for this seed (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)


def _parameter_groups(model: SegmentationNet, copied: list[str], config: TrainConfig) -> list[dict]:
    """Copied parameters learn at ``learning_rate``; fresh ones (e.g. new heads when fine-tuning
    into another class count) at ``fresh_learning_rate`` when set."""
    fresh_lr = config.fresh_learning_rate
    named = list(model.named_parameters())
    fresh = [p for name, p in named if copied and name not in copied]
    if fresh_lr is None or not fresh:
        return [{"params": [p for _, p in named], "lr": config.learning_rate}]
    kept = [p for name, p in named if name in copied]
    return [{"params": kept, "lr": config.learning_rate}, {"params": fresh, "lr": fresh_lr}]


def _average_into(averaged: SegmentationNet, model: SegmentationNet, decay: float) -> None:
    """One step of the weights' moving average: ``averaged ← decay·averaged + (1 − decay)·model``."""
    with torch.no_grad():
        torch._foreach_lerp_(list(averaged.parameters()), list(model.parameters()), 1.0 - decay)


def _check_validation(val: list[LabeledImage], config: ModelConfig) -> None:
    for item in val:
        if item.image.shape[0] != config.in_channels:
            raise TrainingDataError(
                f"validation image {item.name!r} has {item.image.shape[0]} channels; "
                f"the model takes {config.in_channels}"
            )
    check_values([item.labeled() for item in val], config.num_classes)
    if not any(item.labeled_pixels for item in val):
        raise TrainingDataError(
            "the validation data has no labeled pixels: paint some, or train without validation"
        )


def check_run(
    train: list[LabeledImage], val: list[LabeledImage] | None, info: ModelInfo, config: TrainConfig, *, fine_tune: bool
) -> None:
    """Raise a ``CellprepError`` naming the problem unless ``train`` (and ``val``) can train the
    model ``info`` describes with ``config`` (``fine_tune``: it starts from a trained model)."""
    model_config = info.config
    check_training_data(train, model_config.num_classes, config.patch_size)
    if train[0].image.shape[0] != model_config.in_channels:
        raise TrainingDataError(
            f"the training images have {train[0].image.shape[0]} channels; "
            f"the model takes {model_config.in_channels}"
        )
    _check_filter_decorrelation(config, model_config)
    if val:
        _check_validation(val, model_config)


@dataclass
class _Best:
    """Best-model keeping: the model kept so far (a copy in eval mode), its epoch (0: the starting
    model) and its scores (``None``: kept unscored, as every epoch is without scoring windows)."""

    model: SegmentationNet | None = None
    epoch: int | None = None
    scores: Scores | None = None

    @property
    def miou(self) -> float | None:
        return self.scores.miou if self.scores is not None else None

    def beaten_by(self, result: Scores | None, ties: bool) -> bool:
        """Whether an epoch scoring ``result`` is kept instead: always unscored, never on a NaN
        mIoU, else on a higher mIoU (an equal one too with ``ties``)."""
        if result is None:
            return True
        if math.isnan(result.miou):
            return False
        return self.miou is None or result.miou > self.miou or (ties and result.miou == self.miou)


@dataclass
class _Run:
    """One training run as its phases share it: what it trains on and with, the model being
    trained, its patches and its clock, and what has happened so far (``_record``)."""

    train: list[LabeledImage]
    val: list[LabeledImage] | None
    info: ModelInfo
    config: TrainConfig
    init: LoadedModel | None
    device: torch.device
    amp: bool  # float16 autocast (CUDA)
    cpu_bf16: bool  # bfloat16 autocast (a CPU with it in hardware)
    model: SegmentationNet
    copied: list[str]  # the names of the tensors copied from ``init``
    sampler: PatchSampler
    steps: int  # per epoch
    digests: list[str]  # of the training images (what ``plan.continues_fine_tuning`` checks)
    head_fit_loss: float | None = None
    start: float = 0.0  # perf_counter when the epochs began
    first_step: float | None = None  # when the time budget starts
    epochs_run: int = 0
    stopped: bool = False
    out_of_time: bool = False
    best: _Best = field(default_factory=_Best)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def budget_spent(self) -> bool:
        """Whether ``config.seconds`` have passed since the first step (which starts the clock)."""
        now = time.perf_counter()
        self.first_step = now if self.first_step is None else self.first_step
        return self.config.seconds is not None and now - self.first_step >= self.config.seconds


@dataclass
class _Stepper:
    """What the epoch phase steps with: the optimiser, its schedule and gradient scaler, the moving
    average of the weights (``average_weights``) and the loss names."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    averaged: SegmentationNet | None
    names: list[str]


@dataclass
class _EpochLoss:
    """The mean losses of an epoch's steps and the last step's forward pass."""

    total: float
    parts: dict[str, float]
    output: ModelOutput


def _start(
    train: list[LabeledImage],
    val: list[LabeledImage] | None,
    info: ModelInfo,
    config: TrainConfig,
    init: LoadedModel | None,
) -> _Run:
    """The model to train (``init``'s weights by the fine-tune rule) on its device, and its patches."""
    device = resolve_device(config.device)
    model = initial_model(info.config, config.seed)
    copied = transfer_weights(model, init) if init is not None else []
    model.to(device)
    sampler = PatchSampler(train, config.patch_size, np.random.default_rng(config.seed), config.augment)
    return _Run(
        train,
        val,
        info,
        config,
        init,
        device,
        amp=config.amp and device.type == "cuda",
        cpu_bf16=cpu_bfloat16_applies(config.cpu_bfloat16, device),
        model=model,
        copied=copied,
        sampler=sampler,
        steps=config.steps_per_epoch or steps_for_one_pass(train, config.patch_size, config.batch_size),
        digests=sorted({item.digest() for item in train}),
    )


def _adapt(run: _Run) -> None:
    """Adapt: re-estimate the BatchNorm statistics on ``ADAPT_BATCHES`` batches of training
    patches before the first step (AdaBN; ``adapt_norm``, ``freeze_norm``)."""
    batches = (run.sampler.sample(run.config.batch_size)[0] for _ in range(ADAPT_BATCHES))
    adapt_batch_norm(run.model, (torch.from_numpy(images).to(run.device) for images in batches))


def _fit_fresh_heads(run: _Run) -> float | None:
    """Fit heads: ``fit_heads`` on ``FIT_BATCHES`` batches of training patches (their own
    generator: the training patches are the same with or without the fit); the fit's loss, or
    None when no head is fresh."""
    config = run.config
    params = fresh_head_parameters(run.model, run.copied, include_copied=config.fit_copied_heads)
    if not params:
        return None
    sampler = PatchSampler(run.train, config.patch_size, np.random.default_rng([config.seed, 2]), config.augment)
    batches = []
    for _ in range(FIT_BATCHES):
        images, targets, _ = sampler.sample(config.batch_size)
        batches.append((torch.from_numpy(images).to(run.device), torch.from_numpy(targets).to(run.device)))
    return fit_heads(run.model, params, batches)


def _stepper(run: _Run) -> _Stepper:
    config, model = run.config, run.model
    optimizer = torch.optim.Adam(_parameter_groups(model, run.copied, config), betas=config.betas)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * run.steps)
        if config.lr_schedule == "cosine"
        else None
    )
    names = output_names(run.info.config) + ["ensemble"] + (["decorrelation"] if config.filter_decorrelation else [])
    return _Stepper(
        optimizer,
        scheduler,
        torch.amp.GradScaler("cuda", enabled=run.amp),
        averaged=copy.deepcopy(model) if config.average_weights > 0 else None,
        names=names,
    )


def _refresher(run: _Run) -> PatchSampler | None:
    """The patches that re-estimate the BatchNorm statistics at each epoch's end (``refresh_norm``,
    a model with BatchNorm), from their own generator: the training patches are the same with or
    without the refresh."""
    if not run.config.refresh_norm or not any(isinstance(m, _BatchNorm) for m in run.model.modules()):
        return None
    rng = np.random.default_rng([run.config.seed, 1])
    return PatchSampler(run.train, run.config.patch_size, rng, run.config.augment)


def _windows(run: _Run) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """What each epoch is scored on: the validation items, else the training labels with
    ``select_on_strokes``, else nothing."""
    scored = run.val if run.val is not None else (run.train if run.config.select_on_strokes else None)
    return scoring_windows(scored, run.info.config.size_multiple) if scored is not None else []


def _step(run: _Run, stepper: _Stepper) -> tuple[torch.Tensor, list[float], ModelOutput]:
    """One optimiser step on a batch of sampled patches."""
    config, device, model = run.config, run.device, run.model
    images, targets, pixel_weights = run.sampler.sample(config.batch_size)
    x = torch.from_numpy(images).to(device, non_blocking=True)
    y = torch.from_numpy(targets).to(device, non_blocking=True)
    w = None if pixel_weights is None else torch.from_numpy(pixel_weights).to(device, non_blocking=True)
    stepper.optimizer.zero_grad(set_to_none=True)
    dtype = torch.bfloat16 if run.cpu_bf16 else torch.float16
    with torch.autocast(device.type, dtype=dtype, enabled=run.amp or run.cpu_bf16):
        loss, parts, output = training_loss(model, x, y, w, config.filter_decorrelation)
    stepper.scaler.scale(loss).backward()
    stepper.scaler.step(stepper.optimizer)
    stepper.scaler.update()
    if stepper.averaged is not None:
        _average_into(stepper.averaged, model, config.average_weights)
    if stepper.scheduler is not None:
        stepper.scheduler.step()
    return loss, parts, output


def _epoch(
    run: _Run, stepper: _Stepper, epoch: int, stop: threading.Event | None
) -> Generator[StepEnd, None, _EpochLoss | None]:
    """Epoch: ``run.steps`` steps, each announced by a ``StepEnd``, until ``stop`` is set
    (``run.stopped``) or the time budget is spent (``run.out_of_time``); ``None`` when it ended
    before its first step."""
    config = run.config
    run.model.train()
    if config.freeze_norm:
        freeze_batch_norm(run.model)
    sums, total_sum, done, output = np.zeros(len(stepper.names)), 0.0, 0, None
    for step in range(1, run.steps + 1):
        if stop is not None and stop.is_set():
            run.stopped = True
            break
        if run.budget_spent():
            run.out_of_time = True
            break
        loss, parts, output = _step(run, stepper)
        total = float(loss.detach())
        total_sum += total
        sums += parts
        done += 1
        losses = dict(zip(stepper.names, parts))
        yield StepEnd(epoch, config.epochs, step, run.steps, total, losses, run.elapsed())
    if run.stopped or done == 0:
        return None
    return _EpochLoss(total_sum / done, dict(zip(stepper.names, (sums / done).tolist())), output)


def _epoch_model(run: _Run, averaged: SegmentationNet | None, refresher: PatchSampler | None) -> SegmentationNet:
    """The model an epoch ends with (what is scored, shown and kept): the trained weights or their
    moving average, its BatchNorm statistics re-estimated on ``REFRESH_BATCHES`` batches of
    patches with ``refresher``, else (an average) copied from the trained model."""
    epoch_model = run.model if averaged is None else averaged
    if averaged is not None and refresher is None:
        for mine, theirs in zip(averaged.buffers(), run.model.buffers(), strict=True):
            mine.copy_(theirs)
    if refresher is not None:
        batches = (refresher.sample(run.config.batch_size)[0] for _ in range(REFRESH_BATCHES))
        adapt_batch_norm(epoch_model, (torch.from_numpy(images).to(run.device) for images in batches))
    return epoch_model


def _score(run: _Run, model: SegmentationNet, windows: list, stop: threading.Event | None) -> Scores | None:
    """Score: ``model`` on the scoring windows (``validation_scores``); ``None`` without windows,
    or when ``stop`` came meanwhile (``run.stopped``)."""
    if not windows:
        return None
    result = validation_scores(model, run.info, windows, amp=run.amp, stop=stop)
    run.stopped = result is None
    return result


def _keep(
    run: _Run, epoch: int, model: SegmentationNet, result: Scores | None, checkpoint_path: Path | None
) -> LoadedModel | None:
    """Keep: when the epoch beats the best so far (``_Best.beaten_by``; ties win when scored on
    the painted labels), a copy of its model becomes the best, is written to ``checkpoint_path``
    and is handed out with the record so far; ``None`` when it did not improve."""
    if not run.best.beaten_by(result, ties=run.val is None):
        return None
    run.best = _Best(copy.deepcopy(model).eval(), epoch, result)
    kept = LoadedModel(run.best.model, replace(run.info, training=_record(run)))
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, run.best.model, kept.info, overwrite=True)
    return kept


def _keep_start(run: _Run, windows: list, stop: threading.Event | None) -> None:
    """When fine-tuning is scored on the painted labels, the starting model is the bar to beat
    (epoch 0)."""
    scores = validation_scores(run.model, run.info, windows, amp=run.amp, stop=stop)
    if scores is not None and not math.isnan(scores.miou):
        run.best = _Best(copy.deepcopy(run.model).eval(), 0, scores)


def _record(run: _Run) -> dict:
    """The training record a checkpoint keeps (``ModelInfo.training``)."""
    config, best = run.config, run.best
    names = run.info.class_names
    return {
        "epochs_run": run.epochs_run,
        "epochs": config.epochs,
        "best_epoch": best.epoch,
        "best_val_miou": finite_or_none(best.miou),
        "val_iou": None if best.scores is None else dict(zip(names, map(finite_or_none, best.scores.iou))),
        "val_dice": None if best.scores is None else dict(zip(names, map(finite_or_none, best.scores.dice))),
        "stopped": run.stopped,
        "out_of_time": run.out_of_time,
        "time_budget_s": config.seconds,
        "seed": config.seed,
        "learning_rate": config.learning_rate,
        "fresh_learning_rate": config.fresh_learning_rate,
        "fit_heads": config.fit_heads,
        "fit_copied_heads": config.fit_copied_heads,
        "head_fit_loss": run.head_fit_loss,
        "betas": list(config.betas),
        "batch_size": config.batch_size,
        "patch_size": config.patch_size,
        "steps_per_epoch": run.steps,
        "lr_schedule": config.lr_schedule,
        "freeze_norm": config.freeze_norm,
        "adapt_norm": config.adapt_norm,
        "refresh_norm": config.refresh_norm,
        "select_on_strokes": config.select_on_strokes and run.val is None,
        "filter_decorrelation": config.filter_decorrelation,
        "augment": config.augment,
        "mixed_precision": run.amp,
        "cpu_bfloat16": run.cpu_bf16,
        "average_weights": config.average_weights,
        "device": describe_device(run.device),
        "train_labeled_pixels": sum(item.labeled_pixels for item in run.train),
        "val_labeled_pixels": sum(item.labeled_pixels for item in run.val or []),
        "fine_tuned_from": run.init.label if run.init is not None else None,
        "image_digests": run.digests,
        "weights_copied": len(run.copied),
        "seconds": round(run.elapsed(), 1),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _new_checkpoint(path: str | Path | None) -> Path | None:
    if path is not None and Path(path).exists():
        raise OutputExistsError(f"{path} already exists; choose another checkpoint file or remove it first")
    return Path(path) if path is not None else None


def train_iter(
    train: list[LabeledImage],
    val: list[LabeledImage] | None,
    info: ModelInfo,
    config: TrainConfig,
    *,
    init: LoadedModel | None = None,
    stop: threading.Event | None = None,
    checkpoint_path: str | Path | None = None,
) -> Generator[NormAdapted | StepEnd | EpochEnd, None, TrainingResult]:
    """Train the model ``info`` describes; yield ``StepEnd`` per step and ``EpochEnd`` per epoch
    (and first ``NormAdapted`` when ``config.adapt_norm`` or ``freeze_norm`` re-estimates BatchNorm).

    The run goes through named phases: adapt (``_adapt``: AdaBN before the first step), fit heads
    (``_fit_fresh_heads``: the heads fine-tuning left fresh, fitted alone), then per epoch: epoch
    (``_epoch``: the steps), score (``_score``: the epoch's model, ``_epoch_model``) and keep
    (``_keep``: best-model keeping).

    Patches are sampled around labeled pixels (``PatchSampler``). With ``val``
    the eval-mode model is scored after each epoch as test scoring scores it (``validation_scores``: tiled prediction
    of each validation image, around its labeled pixels), and the best model by validation mIoU is
    kept (and written atomically to ``checkpoint_path``, which must not exist beforehand); without
    it the last epoch counts as best. An epoch that improved hands out its model (a copy in eval
    mode, ``EpochEnd.best_model``), e.g. for a live preview. ``stop`` is checked before every step (and validation
    batch): once set, training ends and the best model so far is returned with
    ``stopped=True`` (the current weights if no epoch was scored yet). ``config.seconds`` ends
    training by the clock instead: the epoch under way is cut short, scored and counted, and
    the result has ``out_of_time=True``. Items with per-pixel ``weight`` train with
    ``weighted_loss``. ``config.filter_decorrelation`` > 0 adds the filter-decorrelation term (CellPrep models only),
    reported as the ``decorrelation`` loss.

    Fine-tuning (``init``): every tensor whose name and shape match is copied from ``init``; when
    the class count changes, the heads, the ensemble and network 1's penultimate layer when its
    width equals the class count keep their fresh initialisation (see ``transfer_weights``).

    ``config.seed`` seeds the weight initialisation (torch) and patch sampling (numpy); on the CPU
    the same seed gives the same model.
    """
    val = val or None
    check_run(train, val, info, config, fine_tune=init is not None)
    checkpoint_path = _new_checkpoint(checkpoint_path)
    run = _start(train, val, info, config, init)
    model = run.model  # the weights being trained (a local name benchmarks.loop.scribbles reads)
    adapting = config.freeze_norm or config.adapt_norm
    if adapting:
        _adapt(run)
    if config.fit_heads:
        run.head_fit_loss = _fit_fresh_heads(run)
    if adapting:
        yield NormAdapted(LoadedModel(copy.deepcopy(model).eval(), info))
    refresher, windows, stepper = _refresher(run), _windows(run), _stepper(run)
    if init is not None and val is None and windows:
        _keep_start(run, windows, stop)
    run.start = time.perf_counter()
    history: list[EpochEnd] = []
    for epoch in range(1, config.epochs + 1):
        loss = yield from _epoch(run, stepper, epoch, stop)
        if loss is None:  # stopped, or the budget ran out at an epoch's start
            break
        epoch_model = _epoch_model(run, stepper.averaged, refresher)
        weights = loss.output.ensemble_weights.detach().float().cpu().tolist()
        result = _score(run, epoch_model, windows, stop)
        if run.stopped:
            break
        run.epochs_run = epoch
        kept = _keep(run, epoch, epoch_model, result, checkpoint_path)
        event = EpochEnd(
            epoch=epoch,
            epochs=config.epochs,
            train_loss=loss.total,
            losses=loss.parts,
            elapsed=run.elapsed(),
            val_iou=result.iou if result else None,
            val_dice=result.dice if result else None,
            val_miou=result.miou if result else None,
            val_mdice=result.mdice if result else None,
            best_miou=run.best.miou,
            best_epoch=run.best.epoch,
            improved=kept is not None,
            scored_on="validation" if val is not None else "painted",
            ensemble_weights=weights,
            best_model=kept,
        )
        history.append(event)
        yield event
        if run.out_of_time:
            break
    return _finish(run, history, checkpoint_path)


def _finish(run: _Run, history: list[EpochEnd], checkpoint_path: Path | None) -> TrainingResult:
    """The best model (the trained weights if none was kept) in eval mode, with its record."""
    model = run.best.model if run.best.model is not None else run.model
    model.eval()
    info = replace(run.info, training=_record(run))
    path = save_checkpoint(checkpoint_path, model, info, overwrite=True) if checkpoint_path is not None else None
    best = run.best
    return TrainingResult(
        LoadedModel(model, info, path), run.stopped, run.epochs_run, best.miou, best.epoch, history, run.out_of_time
    )


def train(
    train: list[LabeledImage],
    val: list[LabeledImage] | None,
    info: ModelInfo,
    config: TrainConfig,
    *,
    callback: Callable[[NormAdapted | StepEnd | EpochEnd], None] | None = None,
    **options: Any,
) -> TrainingResult:
    """Run ``train_iter`` to the end (same keyword options), passing each event to ``callback``."""
    return drive(train_iter(train, val, info, config, **options), callback)
