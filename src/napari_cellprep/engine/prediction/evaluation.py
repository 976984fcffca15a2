"""Predict and score a set of (image, labels) pairs: one confusion matrix over all their pixels,
as the paper reports it, and optionally one per branch. Used by ``cellprep evaluate``, the
training scripts and the benchmarks."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checkpoint import LoadedModel
from ..errors import LabelError
from ..events import Progress, drive
from ..images.labels import LabelKind, check_values, to_targets
from ..images.metrics import Scores, confusion_matrix, finite_or_none, scores
from .inference import Prediction, predict


@dataclass
class Evaluation:
    """Counts over every scored pixel: ``confusion`` (C, C), rows = truth, columns = prediction;
    ``branch_confusion`` (S, C, C) per branch when asked for (a plain U-Net's one branch is the
    ensemble)."""

    confusion: np.ndarray
    branch_confusion: np.ndarray | None = None

    @property
    def scores(self) -> Scores:
        """IoU and Dice per class and their means."""
        return scores(self.confusion)

    @property
    def branch_scores(self) -> list[Scores]:
        """The scores of each branch (empty when not asked for)."""
        return [] if self.branch_confusion is None else [scores(cm) for cm in self.branch_confusion]

    def report(self, class_names: Sequence[str]) -> dict[str, Any]:
        """Per-class IoU, Dice and pixel counts, their means and the confusion matrix (JSON-ready)."""
        cm, result = self.confusion, self.scores
        return {
            "pixels": int(cm.sum()),
            "classes": [
                {
                    "name": name,
                    "iou": finite_or_none(result.iou[k]),
                    "dice": finite_or_none(result.dice[k]),
                    "true_pixels": int(cm[k].sum()),
                    "predicted_pixels": int(cm[:, k].sum()),
                }
                for k, name in enumerate(class_names)
            ],
            "miou": finite_or_none(result.miou),
            "mdice": finite_or_none(result.mdice),
            "confusion_matrix": cm.tolist(),
        }


@dataclass(frozen=True)
class PairScored(Progress):
    """One pair predicted and counted; ``prediction`` holds the outputs asked for."""

    prediction: Prediction | None = None


def evaluate_iter(
    loaded: LoadedModel,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    names: Sequence[str] | None = None,
    kind: LabelKind = LabelKind.CLASS_INDEX,
    outputs: Iterable[str] = (),
    **predict_options: Any,
) -> Generator[PairScored, None, Evaluation]:
    """Predict each (image, labels) pair and add its pixels to the counts; yield ``PairScored``
    per pair. With ``branches`` among ``outputs`` each branch is counted too.

    ``pairs`` may be a generator (files read one at a time). Labels are of ``kind`` and cover
    the image's planes and pixels; unlabeled pixels (painted value 0) are not scored.
    ``names`` (one per pair) name the images in messages and give the progress total.
    ``predict_options`` go to ``predict`` (tile, overlap, batch_size, channel_axis, rgb, device).
    """
    num_classes = loaded.info.config.num_classes
    outputs = tuple(outputs)
    branches = "branches" in outputs
    cm = np.zeros((num_classes, num_classes), np.int64)
    branch_cm = (
        np.zeros((loaded.info.config.num_outputs, num_classes, num_classes), np.int64) if branches else None
    )
    total = len(names) if names is not None else 0
    for index, (image, labels) in enumerate(pairs):
        name = names[index] if names is not None else f"image {index + 1}"
        target = to_targets(labels, kind, np.shape(labels), name)
        check_values([(name, target, kind)], num_classes)
        prediction = predict(loaded, image, outputs=outputs, **predict_options)
        if target.shape != prediction.labels.shape:
            raise LabelError(
                f"{name} gives labels of shape {prediction.labels.shape} but its labels have shape "
                f"{target.shape}"
            )
        cm += confusion_matrix(prediction.labels, target, num_classes)
        if branch_cm is not None:
            per_branch = prediction.branch_labels
            if per_branch is None:  # one branch: the ensemble
                per_branch = prediction.labels[..., None, :, :]
            for s in range(branch_cm.shape[0]):
                branch_cm[s] += confusion_matrix(per_branch[..., s, :, :], target, num_classes)
        yield PairScored(index + 1, total, name, prediction)
    return Evaluation(cm, branch_cm)


def evaluate(
    loaded: LoadedModel, pairs: Iterable[tuple[np.ndarray, np.ndarray]], **options: Any
) -> Evaluation:
    """``evaluate_iter`` run to the end; the same keyword options."""
    return drive(evaluate_iter(loaded, pairs, **options))
