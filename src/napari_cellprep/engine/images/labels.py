"""Label conventions, their conversions and checks, in one place.

- ``CLASS_INDEX``: value k is class k (0..C-1). Mask files and ``cellprep predict``'s
  ``<stem>_labels.tif`` hold class indices.
- ``PAINTED``: 0 is "not annotated", value v >= 1 is class v - 1. Every napari Labels layer the
  product makes or reads holds painted values (so a segmentation can be corrected with the brush
  and trained on directly), and so do label files given to ``cellprep train --painted``.

Training targets are class indices with ``IGNORE_INDEX`` (-1) where a pixel has no label.

Corrections count for more: on a Labels layer that holds a segmentation (its predicted values
kept beside it), a pixel the user painted to another class has loss weight
``CORRECTION_WEIGHT``, a pixel left as predicted weight 1 (``correction_weights``). The pixels
the user annotated are the painted ones on a stroke layer, the corrected ones on a segmentation
(``annotated_pixels``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from enum import Enum

import numpy as np

from ...model import IGNORE_INDEX
from ..errors import CellprepWarning, LabelError, SettingsError, TrainingDataError


class LabelKind(Enum):
    """How label values map to classes."""

    CLASS_INDEX = "class index"
    PAINTED = "painted"

    @property
    def offset(self) -> int:
        """Label value of class 0."""
        return 1 if self is LabelKind.PAINTED else 0

    def value_name(self, value: int) -> str:
        """A label value as the user sees it, e.g. ``painted value 3`` or ``mask value 3``."""
        return f"{'painted' if self is LabelKind.PAINTED else 'mask'} value {value}"

    def value_range(self, num_classes: int) -> str:
        """The values of ``num_classes`` classes, e.g. ``values 1..2``."""
        return f"values {self.offset}..{num_classes - 1 + self.offset}"

    def describe_class(self, k: int) -> str:
        """Class ``k`` and, for painted labels, the value that paints it."""
        return f"class {k} (painted value {k + 1})" if self is LabelKind.PAINTED else f"class {k}"

    def hint(self, class_names: Sequence[str] | None = None) -> str:
        """What to do when a class is missing from the labels."""
        if self is LabelKind.PAINTED:
            return "paint some pixels of every class" + (
                f" ({label_mapping(class_names)})" if class_names else ""
            )
        return (
            "masks hold class indices 0..C-1 with every class present somewhere "
            "(save binary 0/255 masks as 0/1)"
        )


def labels_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned dtype that holds label values up to ``max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise SettingsError(f"label value {max_value} is too large")


def to_painted(class_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices as painted values (class + 1), the convention of every Labels layer."""
    return np.asarray(class_labels).astype(labels_dtype(num_classes)) + 1


CORRECTION_WEIGHT = 10.0
"""Loss weight of a pixel the user corrected, against 1 for a pixel accepted as predicted: a
correction is usually a few strokes among a whole image of accepted pixels."""


def correction_weights(
    painted: np.ndarray, predicted: np.ndarray, weight: float = CORRECTION_WEIGHT
) -> np.ndarray:
    """Per-pixel loss weights of a corrected segmentation (both in painted values): ``weight``
    where the user painted another class than predicted, 1 elsewhere (0 = erased, unlabeled)."""
    if np.shape(painted) != np.shape(predicted):
        raise LabelError(
            f"labels of shape {np.shape(painted)} cannot be compared with a prediction of {np.shape(predicted)}"
        )
    if weight < 1:
        raise SettingsError(f"a correction weighs at least as much as a predicted pixel, got {weight}")
    return np.where(np.asarray(painted) != np.asarray(predicted), np.float32(weight), np.float32(1.0))


def annotated_pixels(painted: np.ndarray, predicted: np.ndarray | None = None) -> np.ndarray:
    """Where the user annotated (bool, the shape of ``painted``): the nonzero painted values, and
    on a segmentation layer (``predicted``: its values as predicted) only those the user changed."""
    painted = np.asarray(painted)
    annotated = painted != 0
    if predicted is not None:
        if np.shape(predicted) != painted.shape:
            raise LabelError(
                f"labels of shape {painted.shape} cannot be compared with a prediction of "
                f"{np.shape(predicted)}"
            )
        annotated &= painted != np.asarray(predicted)
    return annotated


def label_mapping(class_names: Sequence[str]) -> str:
    """How painted values map to classes, e.g. ``label 1 = background, label 2 = cells``."""
    return ", ".join(f"label {k + 1} = {name}" for k, name in enumerate(class_names))


def to_targets(labels: np.ndarray, kind: LabelKind, shape: tuple[int, ...], name: str = "") -> np.ndarray:
    """Training targets (int64 class indices, ``IGNORE_INDEX`` = no label) from labels of ``kind``
    covering an image whose plane and Y, X axes have ``shape``.

    Labels must be integers (floats holding integers are accepted); painted labels are >= 0,
    class indices >= -1 (-1 = unlabeled).
    """
    labels = np.asarray(labels)
    what = (
        f"{name or 'the image'}: the labels"
        if kind is LabelKind.PAINTED
        else f"{name or 'the image'}: the mask"
    )
    if labels.shape != tuple(shape):
        raise TrainingDataError(
            f"{what} have shape {labels.shape} but the image has {tuple(shape)}; they must cover the same pixels"
        )
    if labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)):
            raise TrainingDataError(f"{what} hold non-integer values; they must hold class labels")
    elif labels.dtype.kind not in "uib":
        raise TrainingDataError(f"{what} have dtype {labels.dtype}; they must hold integers")
    targets = labels.astype(np.int64) - kind.offset
    if targets.size and targets.min() < IGNORE_INDEX:
        lowest = int(targets.min()) + kind.offset
        allowed = (
            "values 1..C (0 = not annotated)" if kind is LabelKind.PAINTED else "0..C-1 (-1 = unlabeled)"
        )
        raise TrainingDataError(f"{what} hold the negative value {lowest}; use {allowed}")
    return targets


Labeled = tuple[str, np.ndarray, LabelKind]
"""(name, targets, kind): one image's training targets and the convention its labels came in."""


PAINTED_HINT = (
    "if 0 means 'not annotated' (labels painted as in napari: value v = class v - 1), say so: "
    "cellprep train --painted, or labels_kind='painted'"
)
DOMINANT_ZERO = 0.9
"""Share of the labeled pixels at mask value 0 beyond which class-index labels of three or more
classes look painted (0 = the unpainted rest of the image)."""


def warn_if_painted(labeled: Sequence[Labeled], num_classes: int) -> None:
    """Warn (``CellprepWarning``) when class-index labels look painted: a 0 that dominates."""
    counts = np.zeros(num_classes, np.int64)
    for _, target, kind in labeled:
        if kind is LabelKind.CLASS_INDEX:
            counts += np.bincount(target[(target >= 0) & (target < num_classes)], minlength=num_classes)
    if num_classes >= 3 and counts.sum() and counts[0] >= DOMINANT_ZERO * counts.sum():
        warnings.warn(
            f"mask value 0 covers {counts[0] / counts.sum():.0%} of the labeled pixels and is trained as a "
            f"class; {PAINTED_HINT}",
            CellprepWarning,
            stacklevel=3,
        )


def check_values(labeled: Iterable[Labeled], num_classes: int) -> None:
    """Raise ``LabelError`` if some targets hold a class the model lacks."""
    for name, target, kind in labeled:
        top = int(target.max()) if target.size else IGNORE_INDEX
        if top >= num_classes:
            raise LabelError(
                f"{name or 'an image'}: {kind.value_name(top + kind.offset)} is not a class: the model has "
                f"{num_classes} classes ({kind.value_range(num_classes)})"
                + (f"; {PAINTED_HINT}" if kind is LabelKind.CLASS_INDEX and top == num_classes else "")
            )


def classes_present(targets: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Which of ``num_classes`` classes have a labeled pixel in ``targets`` (bool per class)."""
    present = np.zeros(num_classes, dtype=bool)
    for target in targets:
        labeled = target[(target >= 0) & (target < num_classes)]
        present |= np.bincount(labeled, minlength=num_classes) > 0
    return present


def check_classes(labeled: Sequence[Labeled], num_classes: int) -> None:
    """Raise unless every target holds classes of the model only and every class has a pixel."""
    check_values(labeled, num_classes)
    kind = labeled[0][2] if labeled else LabelKind.PAINTED
    present = classes_present((target for _, target, _ in labeled), num_classes)
    if not present.any():
        raise TrainingDataError(f"there are no labeled pixels: {kind.hint()}")
    missing = [int(k) for k in np.flatnonzero(~present)]
    if missing:
        listed = ", ".join(kind.describe_class(k) for k in missing)
        if len(missing) > 4:
            first, last = kind.describe_class(missing[0]), kind.describe_class(missing[-1])
            listed = f"{len(missing)} classes ({first}, ..., {last})"
        verb = "has" if len(missing) == 1 else "have"
        raise TrainingDataError(f"{listed} {verb} no labeled pixel: {kind.hint()}")


def class_count(labeled: Sequence[Labeled], requested: int | None = None) -> int:
    """The class count of a new training run: ``requested``, else the largest class present + 1;
    checked by ``check_classes``."""
    if requested is not None and requested < 2:
        raise SettingsError(f"a model needs at least 2 classes, got {requested}")
    kind = labeled[0][2] if labeled else LabelKind.PAINTED
    top = max((int(target.max()) for _, target, _ in labeled if target.size), default=IGNORE_INDEX)
    if top < 0:
        raise TrainingDataError(f"there are no labeled pixels: {kind.hint()}")
    num_classes = requested if requested is not None else top + 1
    if num_classes < 2:
        raise TrainingDataError(
            f"every label is class 0 ({kind.value_name(kind.offset)}): a segmentation needs at least two "
            f"classes; {kind.hint()}"
        )
    check_classes(labeled, num_classes)
    warn_if_painted(labeled, num_classes)
    return num_classes
