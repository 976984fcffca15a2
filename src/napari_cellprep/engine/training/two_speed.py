"""Two speeds from the same strokes: a pixel classifier answers within about a second, then the
network learns past it from the classifier's confident pixels (pseudo-labels, as in Matskevych et
al., "From shallow to deep", 2022) beside the strokes. The classifier joins the network's ensemble
with a weight chosen on held-out strokes, so what is kept at any moment is whichever of
classifier, network and their ensemble fits the held-out strokes best.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ...model import IGNORE_INDEX
from ..checkpoint import LoadedModel, ModelInfo
from ..classifier.fast import FastClassifier, blend, fit_fast
from ..classifier.features import pixel_features
from ..events import EpochEnd, NormAdapted, StepEnd
from ..images.metrics import confusion_matrix, scores
from ..prediction.inference import predict
from .data import LabeledImage
from .live import PreviewReady, training_job
from .loop import TrainingResult, initial_model
from .plan import transfer_weights
from .recipe import RunPlan
from .scoring import _AsGiven

PSEUDO_THRESHOLD = 0.7
"""A pixel the classifier gives at least this probability becomes a pseudo-label."""
PSEUDO_WEIGHTS = ((0.9, 1.0), (PSEUDO_THRESHOLD, 0.5))
"""(probability at least, loss weight) of a pseudo-label: two levels, so the loss stays a few groups."""
STROKE_WEIGHT = 2.0
"""Loss weight of a painted pixel beside the pseudo-labels (× its own weight, e.g. a correction's)."""
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The classifier's ensemble weights tried on the held-out strokes (0: network, 1: classifier)."""
UNCHOSEN_WEIGHT = 0.5
"""The classifier's weight when no held-out strokes can choose it."""


@dataclass(frozen=True)
class ClassifierFitted:
    """The fast answer: the classifier fitted to the training strokes, ``seconds`` after the job
    started, with its mIoU on the held-out strokes (``None`` without them)."""

    fast: FastClassifier
    seconds: float
    held_out: float | None


@dataclass(frozen=True)
class EnsembleChosen:
    """After the network improved (``epoch``; 0: adapted before training): the held-out mIoU of
    each classifier weight (``WEIGHTS``) and the weight kept; ``which`` names what it keeps."""

    epoch: int
    weight: float
    which: str
    held_out: dict[float, float]


def which(weight: float) -> str:
    """What a classifier weight keeps: the classifier, the network or their ensemble."""
    return "classifier" if weight >= 1.0 else "network" if weight <= 0.0 else "ensemble"


def pseudo_labeled(items: Sequence[LabeledImage], probabilities: Sequence[np.ndarray]) -> list[LabeledImage]:
    """Each item with the classifier's confident pixels labeled (``PSEUDO_WEIGHTS``) as their most
    probable class, and the painted pixels on top at ``STROKE_WEIGHT``."""
    out = []
    for item, p in zip(items, probabilities, strict=True):
        confidence = p.max(axis=0)
        weight = np.zeros(item.target.shape, np.float32)
        for least, level in reversed(PSEUDO_WEIGHTS):
            weight[confidence >= least] = level
        target = np.where(weight > 0, p.argmax(axis=0), IGNORE_INDEX).astype(np.int64)
        painted = item.target != IGNORE_INDEX
        target[painted] = item.target[painted]
        own = 1.0 if item.weight is None else item.weight[painted]
        weight[painted] = STROKE_WEIGHT * own
        out.append(replace(item, target=target, weight=weight))
    return out


def held_out_miou(probabilities: Sequence[np.ndarray], items: Sequence[LabeledImage], num_classes: int) -> float:
    """mIoU of the most probable classes on the items' labeled pixels (each by its weight)."""
    cm = np.zeros((num_classes, num_classes))
    for p, item in zip(probabilities, items, strict=True):
        cm += confusion_matrix(p.argmax(axis=0), item.target, num_classes, weight=item.weight)
    return float(scores(cm).miou)


def network_probabilities(model: LoadedModel, item: LabeledImage) -> np.ndarray:
    """(C, H, W) ensemble probabilities of the network alone on a normalised item's image."""
    loaded = LoadedModel(model.model, replace(model.info, normalization=_AsGiven()))
    return predict(loaded, item.image, channel_axis=0, outputs=("probabilities",)).probabilities


def choose_weight(
    network: Sequence[np.ndarray], classifier: Sequence[np.ndarray], val: Sequence[LabeledImage], num_classes: int
) -> tuple[float, dict[float, float]]:
    """The classifier weight (``WEIGHTS``) whose blend fits the held-out strokes best, and each
    weight's mIoU; a tie goes to the smaller weight (the network, which goes on learning)."""
    held_out = {
        w: held_out_miou([blend(n, c, w) for n, c in zip(network, classifier, strict=True)], val, num_classes)
        for w in WEIGHTS
    }
    return max(WEIGHTS, key=lambda w: (held_out[w], -w)), held_out


class _Features:
    """Each image's features, and the classifier's probabilities on it, computed once (held-out
    items share their image with training ones)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[np.ndarray, torch.Tensor]] = {}
        self._classified: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, items: Sequence[LabeledImage]) -> list[torch.Tensor]:
        out = []
        for item in items:
            key = id(item.image)
            if key not in self._cache:
                self._cache[key] = (item.image, pixel_features(item.image))  # the image keeps its id valid
            out.append(self._cache[key][1])
        return out

    def probabilities(self, fast: FastClassifier, items: Sequence[LabeledImage]) -> list[np.ndarray]:
        """The classifier's probabilities on each item's image, from the cached features."""
        out = []
        for item, f in zip(items, self(items), strict=True):
            key = (id(fast), id(item.image))
            if key not in self._classified:
                self._classified[key] = fast.probabilities(item.image, features=f)
            out.append(self._classified[key])
        return out


def _fit(items: Sequence[LabeledImage], num_classes: int, features: _Features) -> FastClassifier:
    return fit_fast([i.image for i in items], [i.target for i in items], num_classes, features=features(items))


def starting_network(info: ModelInfo, init: LoadedModel | None, seed: int) -> LoadedModel:
    """The network a run starts from, as ``train_iter`` builds it (``init``'s weights where they fit)."""
    model = initial_model(info.config, seed)
    if init is not None:
        transfer_weights(model, init)
    return LoadedModel(model.eval(), info)


def two_speed_job(
    plan: RunPlan,
    *,
    stop: threading.Event | None = None,
    preview: np.ndarray | None = None,
    preview_channel_axis: int | None = None,
    threads: int | None = None,
    network: bool = True,
) -> Generator[ClassifierFitted | EnsembleChosen | NormAdapted | StepEnd | EpochEnd | PreviewReady, None, TrainingResult]:
    """Fit the classifier to the plan's training strokes and show it (``ClassifierFitted``; with a
    ``preview`` plane, a ``PreviewReady`` of epoch 0), then run the plan on the strokes and the
    classifier's pseudo-labels (``training_job``; ``config.seconds`` counts from this job's start,
    the final refit included),
    choosing the classifier's ensemble weight on the plan's validation items whenever the network
    improved (``EnsembleChosen``, and the blend's ``PreviewReady``). The result's model carries the
    classifier refitted to every stroke (train and held out) at the chosen weight. ``network``
    False, or no time left for it: the classifier alone (weight 1) on the starting network."""
    info, config, init = plan.info, plan.config, plan.init
    train, val = list(plan.train), list(plan.val) if plan.val else None
    started = time.monotonic()
    num_classes = info.config.num_classes
    features = _Features()
    fast = _fit(train, num_classes, features)
    val_classifier = features.probabilities(fast, val or [])
    yield ClassifierFitted(
        fast, time.monotonic() - started, held_out_miou(val_classifier, val, num_classes) if val else None
    )
    if preview is not None:
        yield PreviewReady(_preview_labels(fast.with_weight(1.0), None, preview, preview_channel_axis, info), 0)
    fitted = time.monotonic() - started  # the final refit to every stroke costs about as much again
    remaining = None if config.seconds is None else config.seconds - (time.monotonic() - started) - fitted
    if not network or (remaining is not None and remaining <= 0):
        result = TrainingResult(starting_network(info, init, config.seed), stop is not None and stop.is_set(), 0, None, None)
        return _keep(result, train, val, num_classes, features, 1.0)
    pseudo = pseudo_labeled(train, features.probabilities(fast, train))
    pseudo_plan = replace(plan, train=tuple(pseudo), config=replace(config, seconds=remaining))
    events = training_job(pseudo_plan, stop=stop, threads=threads)
    weight = UNCHOSEN_WEIGHT
    while True:
        try:
            event = next(events)
        except StopIteration as end:
            return _keep(end.value, train, val, num_classes, features, weight)
        yield event
        improved = event.model if isinstance(event, NormAdapted) else getattr(event, "best_model", None)
        if improved is None or (stop is not None and stop.is_set()):
            continue
        epoch = getattr(event, "epoch", 0)
        if val:
            network_val = [network_probabilities(improved, item) for item in val]
            weight, by_weight = choose_weight(network_val, val_classifier, val, num_classes)
            yield EnsembleChosen(epoch, weight, which(weight), by_weight)
        if preview is not None:
            yield PreviewReady(_preview_labels(fast.with_weight(weight), improved, preview, preview_channel_axis, info), epoch)


def _keep(
    result: TrainingResult, train, val, num_classes: int, features: _Features, weight: float
) -> TrainingResult:
    """``result`` whose model carries the classifier refitted to every stroke, at ``weight``; its
    training record counts the painted pixels (not the pseudo-labels) and the classifier's weight."""
    refit = _fit(list(train) + list(val or []), num_classes, features).with_weight(weight)
    record = dict(result.model.info.training)
    pseudo = record.get("train_labeled_pixels")
    record.update(
        train_labeled_pixels=sum(item.labeled_pixels for item in train),
        pseudo_labeled_pixels=pseudo,
        classifier={"kind": refit.classifier.state().meta["kind"], "weight": weight},
    )
    info = replace(result.model.info, training=record)
    return replace(result, model=replace(result.model, info=info, classifier=refit))


def _preview_labels(
    fast: FastClassifier, network: LoadedModel | None, preview: np.ndarray, channel_axis: int | None, info: ModelInfo
) -> np.ndarray:
    """Labels of the preview plane: the classifier's alone, or its blend with ``network``'s."""
    if network is None:
        probabilities = fast.classify(preview, info.normalization, info.config.in_channels, channel_axis=channel_axis)
        return probabilities.argmax(axis=-3).astype(np.uint8)
    loaded = LoadedModel(network.model, info, classifier=fast)
    return predict(loaded, preview, channel_axis=channel_axis, outputs=()).labels
