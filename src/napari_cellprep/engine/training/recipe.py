"""One training recipe for every face: ``prepare_run`` turns what the user gave (images and their
labels, the model to start from, settings, validation) into a checked ``RunPlan``, which
``cp.train``/``cp.fine_tune``, ``cellprep train`` and the Train dock then run."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...model import NAMED_CONFIGS
from ..checkpoint import LoadedModel, ModelInfo
from ..devices import cpu_bfloat16_applies, describe_device, resolve_device
from ..errors import SettingsError, TrainingDataError
from ..events import EpochEnd, NormAdapted, StepEnd
from ..images.labels import LabelKind, class_count, correction_weights
from ..images.layout import input_channels
from ..images.normalize import Normalization
from .data import LabeledImage, check_training_data, labeled_items, split_validation
from .loop import TrainingResult, check_run, train_iter
from .plan import (
    TrainConfig,
    continues_fine_tuning,
    default_val_fraction,
    model_to_train,
    normalization_for,
    training_settings,
)


@dataclass(frozen=True)
class LabeledInput:
    """An image and the labels over it, as a face has them (not yet normalised).

    ``rgb``: whether the last axis holds RGB(A) colours (``None``: by the layout rule,
    ``engine.images.layout``). ``predicted``: the values these labels held as predicted (a
    segmentation the user corrected); the pixels changed since weigh more
    (``engine.images.labels.correction_weights``)."""

    image: np.ndarray
    labels: np.ndarray
    name: str = "image"
    rgb: bool | None = None
    predicted: np.ndarray | None = None


def input_items(
    given: LabeledInput,
    kind: LabelKind,
    normalization: Normalization,
    in_channels: int,
    channel_axis: int | None = None,
    class_names: Sequence[str] | None = None,
) -> list[LabeledImage]:
    """The training items of one input (one per labeled plane), normalised as the model takes them."""
    weights = None if given.predicted is None else correction_weights(given.labels, given.predicted)
    return labeled_items(
        given.image,
        given.labels,
        normalization,
        in_channels,
        kind=kind,
        rgb=given.rgb,
        channel_axis=channel_axis,
        name=given.name,
        class_names=class_names,
        weights=weights,
    )


@dataclass(frozen=True)
class RunPlan:
    """A training run, resolved and checked: the model to train (``info``) and the one it starts
    from (``init``, ``None``: a new model), the settings, the normalised training and validation
    items, whether it continues a fine-tuning (``plan.CONTINUE_DEFAULTS`` applied) and the
    warnings a face shows before it starts (settings given that this run cannot use)."""

    info: ModelInfo
    config: TrainConfig
    train: tuple[LabeledImage, ...]
    val: tuple[LabeledImage, ...] | None = None
    init: LoadedModel | None = None
    continuing: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def normalization(self) -> Normalization:
        """How the images were (and the model's inputs will be) normalised."""
        return self.info.normalization

    @property
    def labeled_pixels(self) -> tuple[int, int]:
        """Labeled pixels to train on and to validate on."""
        return _labeled_pixels(self.train), _labeled_pixels(self.val or ())

    def train_iter(
        self, *, stop: threading.Event | None = None, checkpoint_path: str | Path | None = None
    ) -> Generator[NormAdapted | StepEnd | EpochEnd, None, TrainingResult]:
        """The run, as ``loop.train_iter``'s events (``stop`` and ``checkpoint_path`` as there)."""
        val = list(self.val) if self.val is not None else None
        return train_iter(
            list(self.train),
            val,
            self.info,
            self.config,
            init=self.init,
            stop=stop,
            checkpoint_path=checkpoint_path,
        )


def _labeled_pixels(items: Iterable[LabeledImage]) -> int:
    return sum(item.labeled_pixels for item in items)


def prepare_run(
    train: Iterable[LabeledInput],
    *,
    kind: LabelKind,
    init: LoadedModel | None = None,
    channel_axis: int | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    architecture: str | Mapping[str, Any] | None = None,
    normalization: str | None = None,
    settings: Mapping[str, Any] | None = None,
    validation: float | Iterable[LabeledInput] | None = None,
    name: str = "",
) -> RunPlan:
    """Everything a run needs, checked; raises a ``CellprepError`` naming the problem otherwise.

    ``train`` is read once, in order (a generator reads one file at a time); labels are of
    ``kind``. A new model (``init`` None) takes the first image's channel count and the
    ``architecture`` (a name in ``NAMED_CONFIGS`` or ``ModelConfig`` fields); fine-tuning ``init``
    keeps its architecture and channel count by the fine-tune rule (``plan.model_to_train``).
    ``num_classes`` None: the largest class labeled + 1. ``normalization`` None: ``init``'s, else
    min-max. ``settings``: the user's ``TrainConfig`` fields, on top of the defaults for training
    afresh, fine-tuning or continuing (``plan.training_settings``). ``validation``: a held-out
    fraction of the labeled pixels (``None``: ``plan.default_val_fraction``; 0: none) or inputs
    of their own.
    """
    settings = dict(settings or {})
    norm = normalization_for(init, normalization)
    in_channels = init.info.config.in_channels if init is not None else None
    items: list[LabeledImage] = []
    for given in train:
        if in_channels is None:
            in_channels = input_channels(given.image.shape, rgb=given.rgb, channel_axis=channel_axis)
        items += input_items(given, kind, norm, in_channels, channel_axis, class_names)
    if in_channels is None:
        raise TrainingDataError("no training images were given")
    classes = class_count([item.labeled() for item in items], num_classes)
    info = model_to_train(
        classes,
        in_channels,
        init=init,
        class_names=class_names,
        architecture=_architecture(architecture),
        normalization=norm,
        name=name,
    )
    continuing = continues_fine_tuning(init, items)
    config = training_settings(init is not None, continuing=continuing, **settings)
    check_training_data(items, classes, config.patch_size)
    if validation is None or isinstance(validation, Real):
        items, val = _held_out(
            items, default_val_fraction(init is not None) if validation is None else validation, config.seed
        )
    else:
        val = [
            item
            for given in validation
            for item in input_items(given, kind, norm, in_channels, channel_axis, class_names)
        ]
        if not val:
            raise TrainingDataError("no validation images were given")
    check_run(items, val, info, config, fine_tune=init is not None)
    device = resolve_device(config.device)
    warnings = tuple(_unused_settings(settings, info, init, val is not None, device))
    return RunPlan(info, config, tuple(items), tuple(val) if val else None, init, continuing, warnings)


def _architecture(architecture: str | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``ModelConfig`` fields: those given, or those of a named configuration."""
    if not isinstance(architecture, str):
        return architecture
    if architecture not in NAMED_CONFIGS:
        raise SettingsError(f"unknown architecture {architecture!r}; choose one of {sorted(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[architecture]


def _held_out(
    items: list[LabeledImage], fraction: float, seed: int
) -> tuple[list[LabeledImage], list[LabeledImage] | None]:
    if not 0.0 <= fraction < 1.0:
        raise SettingsError(f"the validation fraction must be in [0, 1) (0: no validation), got {fraction}")
    return split_validation(items, fraction, seed) if fraction > 0 else (items, None)


def _unused_settings(
    given: Mapping[str, Any], info: ModelInfo, init: LoadedModel | None, validated: bool, device: torch.device
) -> Iterable[str]:
    """A sentence for each setting the user turned on that this run cannot use."""
    if given.get("select_on_strokes") and validated:
        yield "select_on_strokes does nothing with validation data: each epoch is scored on the validation pixels"
    if given.get("fit_heads") and not given.get("fit_copied_heads"):
        if init is None:
            yield "fit_heads does nothing when training a new model: it fits the heads fine-tuning leaves fresh"
        elif init.info.config.num_classes == info.config.num_classes:
            yield (
                "fit_heads does nothing here: the class count stays the same, so every head is copied from "
                f"{init.label!r} (fit_copied_heads fits those too)"
            )
    if given.get("cpu_bfloat16") and not cpu_bfloat16_applies(True, device):
        yield (
            f"cpu_bfloat16 does nothing on {describe_device(device)}: it needs a CPU that computes bfloat16 in "
            "hardware (AMX or AVX512-BF16)"
        )
    batch_norm = [key for key in ("adapt_norm", "refresh_norm", "freeze_norm") if given.get(key)]
    if batch_norm and info.config.norm == "group":
        yield f"{', '.join(batch_norm)}: the model has no BatchNorm statistics to re-estimate (norm 'group')"
