"""Segmentation scores as the paper reports them: per-class IoU and Dice from one confusion
matrix over all evaluated pixels, their means, and k-fold splits for cross-validation."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np


def confusion_matrix(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    ignore_index: int = -1,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """(C, C) int64 counts, rows = truth, columns = prediction; ``ignore_index`` pixels skipped.
    With ``weight`` (same shape) each pixel counts its weight instead (float64 sums)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction of shape {pred.shape} does not match target of shape {target.shape}")
    keep = target != ignore_index
    truth = target[keep].astype(np.int64, copy=False)
    guess = pred[keep].astype(np.int64, copy=False)
    for what, values in (("target", truth), ("prediction", guess)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{what} holds class {int(values.min() if values.min() < 0 else values.max())}, "
                f"outside 0..{num_classes - 1}"
            )
    weights = None
    if weight is not None:
        if np.shape(weight) != target.shape:
            raise ValueError(
                f"weights of shape {np.shape(weight)} do not match target of shape {target.shape}"
            )
        weights = np.asarray(weight, dtype=np.float64)[keep]
    counts = np.bincount(truth * num_classes + guess, weights=weights, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass
class Scores:
    """Per-class IoU and Dice (NaN for a class absent from truth and prediction) and their means."""

    iou: list[float]
    dice: list[float]
    miou: float
    mdice: float

    def to_dict(self) -> dict[str, list[float] | float]:
        return asdict(self)


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, ``None`` where it is missing or NaN (a score JSON can hold)."""
    return None if value is None or math.isnan(value) else float(value)


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice: the mean is NaN
        return float(np.nanmean(values))


def scores(cm: np.ndarray) -> Scores:
    """IoU = TP / (TP + FP + FN) and Dice = 2TP / (2TP + FP + FN) of each class of ``cm``."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return Scores(iou.tolist(), dice.tolist(), _nanmean(iou), _nanmean(dice))


def kfold_splits(n: int, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train indices, test indices) pairs over ``n`` items; each item is tested exactly once."""
    if not 2 <= k <= n:
        raise ValueError(f"k-fold cross-validation needs 2 <= k <= number of items, got k={k} for {n} items")
    folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1 :])), np.sort(folds[i])) for i in range(k)]
