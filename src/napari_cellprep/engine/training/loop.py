"""Training as a generator of progress events, with cancellation, validation and best-model keeping."""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...model import (
    IGNORE_INDEX,
    ModelConfig,
    ModelOutput,
    SegmentationNet,
    build_model,
    method_loss,
    output_names,
)
from ...model.loss import filter_correlation, n2v_mask, self_supervised_loss
from ..checkpoint import LoadedModel, ModelInfo, save_checkpoint
from ..devices import cpu_bfloat16_applies, describe_device, resolve_device
from ..errors import OutputExistsError, SettingsError
from ..events import EpochEnd, NormAdapted, StepEnd, drive
from ..images.labels import check_values
from ..images.metrics import Scores, confusion_matrix, finite_or_none, scores
from ..images.normalize import Normalization
from ..prediction.inference import predict_iter
from .data import (
    LabeledImage,
    PatchSampler,
    TrainingDataError,
    check_training_data,
    labeled_box_area,
)
from .head_fit import FIT_BATCHES, fit_heads, fresh_head_parameters
from .plan import TrainConfig, transfer_weights


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


def _check_filter_decorrelation(config: TrainConfig, model_config: ModelConfig) -> None:
    if config.filter_decorrelation > 0 and model_config.architecture != "cellprep":
        raise SettingsError(
            f"filter_decorrelation {config.filter_decorrelation:g} needs a CellPrep model (it keeps the "
            f"translation filters apart); a plain {model_config.backbone} has none: set it to 0"
        )


def _check_self_supervision(config: TrainConfig, model_config: ModelConfig, fine_tune: bool) -> None:
    if config.self_supervised_weight > 0 and not model_config.denoise_head:
        fix = (
            "the model being fine-tuned has none (a fine-tuned model keeps its architecture): fine-tune "
            "one trained with denoise_head=True, or train afresh with it"
            if fine_tune
            else "set ModelConfig(denoise_head=True) (cellprep train --denoise-head)"
        )
        raise SettingsError(
            f"self_supervised_weight {config.self_supervised_weight:g} needs a model with a denoise head: {fix}"
        )


ADAPT_BATCHES = 4
"""Batches of training patches that set the BatchNorm statistics before a frozen-norm run."""

REFRESH_BATCHES = 2
"""Batches of training patches that re-estimate them at each epoch's end (``refresh_norm``)."""


def adapt_batch_norm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm layer's running statistics on ``batches`` (their plain
    average; AdaBN, Li et al. 2016), so that a model moved to a new kind of image normalises it
    as its own; weights are untouched and the model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
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
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
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


def _fit_fresh_heads(
    model: SegmentationNet, copied: list[str], train: list[LabeledImage], config: TrainConfig, device: torch.device
) -> float | None:
    """``fit_heads`` on ``FIT_BATCHES`` batches of training patches (their own generator: the
    training patches are the same with or without the fit); the fit's loss, or None."""
    params = fresh_head_parameters(model, copied, include_copied=config.fit_copied_heads)
    if not params:
        return None
    sampler = PatchSampler(train, config.patch_size, np.random.default_rng([config.seed, 2]), config.augment)
    batches = []
    for _ in range(FIT_BATCHES):
        images, targets, _ = sampler.sample(config.batch_size)
        batches.append((torch.from_numpy(images).to(device), torch.from_numpy(targets).to(device)))
    return fit_heads(model, params, batches)


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
    _check_self_supervision(config, model_config, fine_tune)
    _check_filter_decorrelation(config, model_config)
    if val:
        _check_validation(val, model_config)


class _AsGiven(Normalization):
    """The identity: a ``LabeledImage`` is normalised already (with its whole plane's
    statistics), so the prediction path takes its values as they are instead of normalising
    them a second time."""

    def stats(self, image: np.ndarray) -> tuple[float, float]:
        return 0.0, 1.0

    def apply(self, image: np.ndarray, stats: tuple[float, float] | None = None) -> np.ndarray:
        return np.asarray(image, dtype=np.float32)


VALIDATION_MARGIN = 64
"""Context (pixels) kept around an item's labeled pixels when it is scored: as much as the
default tiling overlap, four times what any tiled pixel is guaranteed at a seam."""


def scoring_windows(
    items: list[LabeledImage], multiple: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(image, target, weight) views of the part of each item that scoring predicts (``weight``:
    the item's per-pixel loss weights, ``None`` for 1 everywhere): the bounding box of
    its labeled pixels grown by ``VALIDATION_MARGIN`` and clipped to the image, its top-left
    corner on a multiple of ``multiple`` (the model's size multiple, so that pooling groups the
    pixels as in a whole-image pass). A fully labeled item is its whole image; sparse strokes on
    a large image cost their neighbourhood only. Items without labels are left out."""
    windows = []
    for item in items:
        labeled = item.target != IGNORE_INDEX
        rows, cols = np.flatnonzero(labeled.any(axis=1)), np.flatnonzero(labeled.any(axis=0))
        if not rows.size:
            continue
        top = max(0, rows[0] - VALIDATION_MARGIN) // multiple * multiple
        left = max(0, cols[0] - VALIDATION_MARGIN) // multiple * multiple
        bottom, right = rows[-1] + 1 + VALIDATION_MARGIN, cols[-1] + 1 + VALIDATION_MARGIN
        weight = None if item.weight is None else item.weight[top:bottom, left:right]
        windows.append((item.image[:, top:bottom, left:right], item.target[top:bottom, left:right], weight))
    return windows


def validation_scores(
    model: SegmentationNet,
    info: ModelInfo,
    windows: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    *,
    amp: bool = False,
    stop: threading.Event | None = None,
) -> Scores | None:
    """Scores of ``model`` on ``windows`` (``scoring_windows``) by the path test scoring takes
    (``engine.evaluation``): tiled prediction (``predict_iter``, its default tile and overlap)
    with one confusion matrix over every labeled pixel, each counted by its loss weight (a
    correction as ``engine.labels.CORRECTION_WEIGHT`` accepted pixels, as the loss counts it). The
    model itself is left as it is (a prepared copy predicts; memory is bounded by the tile).
    ``amp``: float16 autocast (CUDA). ``None`` when ``stop`` is set before a batch of tiles."""
    loaded = LoadedModel(model, replace(info, normalization=_AsGiven()))
    num_classes = info.config.num_classes
    cm = np.zeros((num_classes, num_classes))
    for image, target, weight in windows:
        precision = "float16" if amp else "float32"
        events = predict_iter(loaded, image, channel_axis=0, outputs=(), precision=precision)
        while True:
            if stop is not None and stop.is_set():
                return None
            try:
                next(events)
            except StopIteration as end:
                prediction = end.value
                break
        cm += confusion_matrix(prediction.labels, target, num_classes, weight=weight)
    return scores(cm)


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

    Patches are sampled around labeled pixels (``PatchSampler``; with ``config.self_supervised_weight``
    > 0, ``config.self_supervised_share`` of each batch anywhere in the images instead). With ``val``
    the eval-mode model is scored after each epoch as test scoring scores it (``validation_scores``: tiled prediction
    of each validation image, around its labeled pixels), and the best model by validation mIoU is
    kept (and written atomically to ``checkpoint_path``, which must not exist beforehand); without
    it the last epoch counts as best. An epoch that improved hands out its model (a copy in eval
    mode, ``EpochEnd.best_model``), e.g. for a live preview. ``stop`` is checked before every step (and validation
    batch): once set, training ends and the best model so far is returned with
    ``stopped=True`` (the current weights if no epoch was scored yet). ``config.seconds`` ends
    training by the clock instead: the epoch under way is cut short, scored and counted, and
    the result has ``out_of_time=True``. Items with per-pixel ``weight`` train with
    ``weighted_loss``. ``config.self_supervised_weight`` > 0 adds the Noise2Void term
    (``training_loss``; the model needs ``denoise_head``), reported as the ``denoising`` loss;
    ``config.filter_decorrelation`` > 0 adds the filter-decorrelation term (CellPrep models only),
    reported as the ``decorrelation`` loss.

    Fine-tuning (``init``): every tensor whose name and shape match is copied from ``init``; when
    the class count changes, the heads, the ensemble and network 1's penultimate layer when its
    width equals the class count keep their fresh initialisation (see ``transfer_weights``).

    ``config.seed`` seeds the weight initialisation (torch) and patch sampling (numpy); on the CPU
    the same seed gives the same model.
    """
    model_config = info.config
    val = val or None
    check_run(train, val, info, config, fine_tune=init is not None)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    if checkpoint_path is not None and checkpoint_path.exists():
        raise OutputExistsError(
            f"{checkpoint_path} already exists; choose another checkpoint file or remove it first"
        )

    device = resolve_device(config.device)
    amp = config.amp and device.type == "cuda"
    cpu_bf16 = cpu_bfloat16_applies(config.cpu_bfloat16, device)
    model = initial_model(model_config, config.seed)
    copied = transfer_weights(model, init) if init is not None else []
    model.to(device)
    rng = np.random.default_rng(config.seed)
    self_supervised = config.self_supervised_weight
    anywhere = config.self_supervised_share if self_supervised else 0.0
    sampler = PatchSampler(train, config.patch_size, rng, config.augment, anywhere)
    if config.freeze_norm or config.adapt_norm:
        batches = (sampler.sample(config.batch_size)[0] for _ in range(ADAPT_BATCHES))
        adapt_batch_norm(model, (torch.from_numpy(images).to(device) for images in batches))
    head_fit_loss = _fit_fresh_heads(model, copied, train, config, device) if config.fit_heads else None
    if config.freeze_norm or config.adapt_norm:
        yield NormAdapted(LoadedModel(copy.deepcopy(model).eval(), info))
    refresher = None
    if config.refresh_norm and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        # its own generator: the training patches are the same with or without the refresh
        refresher = PatchSampler(train, config.patch_size, np.random.default_rng([config.seed, 1]), config.augment)
    scored = val if val is not None else (train if config.select_on_strokes else None)
    val_windows = scoring_windows(scored, model_config.size_multiple) if scored is not None else []
    steps = config.steps_per_epoch or steps_for_one_pass(train, config.patch_size, config.batch_size)
    optimizer = torch.optim.Adam(_parameter_groups(model, copied, config), betas=config.betas)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps)
        if config.lr_schedule == "cosine"
        else None
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    names = (
        output_names(model_config)
        + ["ensemble"]
        + (["denoising"] if self_supervised else [])
        + (["decorrelation"] if config.filter_decorrelation else [])
    )
    masking = torch.Generator().manual_seed(config.seed) if self_supervised else None

    averaged = copy.deepcopy(model) if config.average_weights > 0 else None
    history: list[EpochEnd] = []
    best, best_miou, best_epoch, best_scores = None, None, None, None
    if init is not None and val is None and val_windows:  # the starting model is the bar to beat
        start_scores = validation_scores(model, info, val_windows, amp=amp, stop=stop)
        if start_scores is not None and not math.isnan(start_scores.miou):
            best, best_epoch = copy.deepcopy(model).eval(), 0
            best_miou, best_scores = start_scores.miou, start_scores
    stopped, out_of_time, epochs_run = False, False, 0
    start = time.perf_counter()
    first_step: float | None = None  # when the time budget starts

    digests = sorted({item.digest() for item in train})  # what a further round checks (plan.continues_fine_tuning)

    def summary() -> dict:
        return {
            "epochs_run": epochs_run,
            "epochs": config.epochs,
            "best_epoch": best_epoch,
            "best_val_miou": finite_or_none(best_miou),
            "val_iou": None
            if best_scores is None
            else dict(zip(info.class_names, map(finite_or_none, best_scores.iou))),
            "val_dice": None
            if best_scores is None
            else dict(zip(info.class_names, map(finite_or_none, best_scores.dice))),
            "stopped": stopped,
            "out_of_time": out_of_time,
            "time_budget_s": config.seconds,
            "seed": config.seed,
            "learning_rate": config.learning_rate,
            "fresh_learning_rate": config.fresh_learning_rate,
            "fit_heads": config.fit_heads,
            "fit_copied_heads": config.fit_copied_heads,
            "head_fit_loss": head_fit_loss,
            "betas": list(config.betas),
            "batch_size": config.batch_size,
            "patch_size": config.patch_size,
            "steps_per_epoch": steps,
            "lr_schedule": config.lr_schedule,
            "freeze_norm": config.freeze_norm,
            "adapt_norm": config.adapt_norm,
            "refresh_norm": config.refresh_norm,
            "select_on_strokes": config.select_on_strokes and val is None,
            "self_supervised_weight": config.self_supervised_weight,
            "self_supervised_share": anywhere,
            "filter_decorrelation": config.filter_decorrelation,
            "augment": config.augment,
            "mixed_precision": amp,
            "cpu_bfloat16": cpu_bf16,
            "average_weights": config.average_weights,
            "device": describe_device(device),
            "train_labeled_pixels": sum(item.labeled_pixels for item in train),
            "val_labeled_pixels": sum(item.labeled_pixels for item in val or []),
            "fine_tuned_from": init.label if init is not None else None,
            "image_digests": digests,
            "weights_copied": len(copied),
            "seconds": round(time.perf_counter() - start, 1),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    for epoch in range(1, config.epochs + 1):
        model.train()
        if config.freeze_norm:
            freeze_batch_norm(model)
        loss_sums, total_sum, steps_done = np.zeros(len(names)), 0.0, 0
        for step in range(1, steps + 1):
            if stop is not None and stop.is_set():
                stopped = True
                break
            now = time.perf_counter()
            first_step = now if first_step is None else first_step
            if config.seconds is not None and now - first_step >= config.seconds:
                out_of_time = True
                break
            images, targets, pixel_weights = sampler.sample(config.batch_size)
            x = torch.from_numpy(images).to(device, non_blocking=True)
            y = torch.from_numpy(targets).to(device, non_blocking=True)
            w = (
                None
                if pixel_weights is None
                else torch.from_numpy(pixel_weights).to(device, non_blocking=True)
            )
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16 if cpu_bf16 else torch.float16, enabled=amp or cpu_bf16):
                loss, parts, output = training_loss(
                    model, x, y, w, self_supervised, masking, config.filter_decorrelation
                )
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if averaged is not None:
                _average_into(averaged, model, config.average_weights)
            if scheduler is not None:
                scheduler.step()
            total = float(loss.detach())
            total_sum += total
            loss_sums += parts
            steps_done += 1
            yield StepEnd(
                epoch, config.epochs, step, steps, total, dict(zip(names, parts)), time.perf_counter() - start
            )
        if stopped or steps_done == 0:  # stopped, or the budget ran out at an epoch's start
            break
        epoch_model = model if averaged is None else averaged  # what is scored, shown and kept
        if averaged is not None and refresher is None:
            for mine, theirs in zip(averaged.buffers(), model.buffers(), strict=True):
                mine.copy_(theirs)
        if refresher is not None:
            batches = (refresher.sample(config.batch_size)[0] for _ in range(REFRESH_BATCHES))
            adapt_batch_norm(epoch_model, (torch.from_numpy(images).to(device) for images in batches))
        weights = output.ensemble_weights.detach().float().cpu().tolist()
        result = validation_scores(epoch_model, info, val_windows, amp=amp, stop=stop) if val_windows else None
        if val_windows and result is None:
            stopped = True
            break
        epochs_run = epoch
        if result is None:
            improved = True
        else:
            improved = not math.isnan(result.miou) and (
                best_miou is None or result.miou > best_miou or (val is None and result.miou == best_miou)
            )
        best_model = None
        if improved:
            best_miou, best_epoch, best_scores = (
                (result.miou, epoch, result) if result else (None, epoch, None)
            )
            best = copy.deepcopy(epoch_model).eval()
            best_model = LoadedModel(best, replace(info, training=summary()))
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, best, best_model.info, overwrite=True)
        event = EpochEnd(
            epoch=epoch,
            epochs=config.epochs,
            train_loss=total_sum / steps_done,
            losses=dict(zip(names, (loss_sums / steps_done).tolist())),
            elapsed=time.perf_counter() - start,
            val_iou=result.iou if result else None,
            val_dice=result.dice if result else None,
            val_miou=result.miou if result else None,
            val_mdice=result.mdice if result else None,
            best_miou=best_miou,
            best_epoch=best_epoch,
            improved=improved,
            scored_on="validation" if val is not None else "painted",
            ensemble_weights=weights,
            best_model=best_model,
        )
        history.append(event)
        yield event
        if out_of_time:
            break

    if best is not None:
        model = best
    model.eval()
    final_info = replace(info, training=summary())
    path = None
    if checkpoint_path is not None:
        path = save_checkpoint(checkpoint_path, model, final_info, overwrite=True)
    return TrainingResult(
        LoadedModel(model, final_info, path), stopped, epochs_run, best_miou, best_epoch, history, out_of_time
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
