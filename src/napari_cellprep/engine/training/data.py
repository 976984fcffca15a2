"""Training data: normalised images with (possibly sparse) class targets, checks, validation splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ...model import IGNORE_INDEX
from ..errors import ImageLayoutError, SettingsError, TrainingDataError
from ..images.labels import Labeled, LabelKind, check_classes, to_targets
from ..images.layout import to_planes
from ..images.normalize import Normalization, count_nonfinite, normalize_channels, report_nonfinite

DIGEST_STRIDE = 7
"""Every 7th row and column of an image make its digest (``LabeledImage.digest``)."""


@dataclass
class LabeledImage:
    """One training image and its per-pixel classes (``IGNORE_INDEX`` = not labeled)."""

    image: np.ndarray  # (Cin, H, W) float32, already normalised
    target: np.ndarray  # (H, W) int64 class index, -1 = unlabeled
    name: str = ""
    kind: LabelKind = LabelKind.CLASS_INDEX  # the convention the labels came in (for messages)
    weight: np.ndarray | None = None  # (H, W) float32 loss weight per pixel; None = 1 everywhere

    @property
    def labeled_pixels(self) -> int:
        """How many pixels carry a class (not ``IGNORE_INDEX``)."""
        return int(np.count_nonzero(self.target != IGNORE_INDEX))

    def labeled(self) -> Labeled:
        """(name, target, kind), what the checks of ``engine.labels`` take."""
        return self.name, self.target, self.kind

    def digest(self) -> str:
        """A short fingerprint of the normalised image (a strided sample of it, whatever the labels):
        a training record keeps it, so that a later run can tell it trains on the same image."""
        sample = np.ascontiguousarray(self.image[:, ::DIGEST_STRIDE, ::DIGEST_STRIDE], dtype=np.float32)
        return hashlib.blake2b(sample.tobytes() + repr(self.image.shape).encode(), digest_size=8).hexdigest()


def labeled_items(
    image: np.ndarray,
    labels: np.ndarray,
    normalization: Normalization,
    in_channels: int = 1,
    *,
    kind: LabelKind = LabelKind.CLASS_INDEX,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    name: str = "",
    class_names: Sequence[str] | None = None,
    weights: np.ndarray | None = None,
) -> list[LabeledImage]:
    """Training items from an image (2D, or a stack of planes) and labels of ``kind`` covering it.

    The image is read by the layout rules of ``engine.layout`` and normalised plane by plane;
    each plane whose labels hold a labeled pixel gives one item (named ``name plane (z,)`` in a
    stack). Raises ``TrainingDataError`` for labels of another shape or with no labeled pixel
    (``class_names`` make that message show which value paints which class). ``weights``
    (shaped like ``labels``) are per-pixel loss weights, e.g. ``labels.correction_weights``.
    """
    planes, lead = _planes(image, in_channels, rgb, channel_axis, name)
    report_nonfinite(count_nonfinite(planes), name or "the image")
    targets = to_targets(labels, kind, lead + planes.shape[-2:], name)
    if weights is not None and np.shape(weights) != targets.shape:
        raise TrainingDataError(f"{name or 'the image'}: the weights do not cover the labels")
    items = []
    for index, plane in zip(np.ndindex(lead), planes):
        target = targets[index]
        if (target != IGNORE_INDEX).any():
            plane_name = f"{name} plane {index}" if index else name
            weight = None if weights is None else np.asarray(weights[index], np.float32)
            items.append(
                LabeledImage(normalize_channels(plane, normalization), target, plane_name, kind, weight)
            )
    if not items:
        raise TrainingDataError(f"{name or 'the image'}: no labeled pixels; {kind.hint(class_names)}")
    return items


def _planes(image, in_channels, rgb, channel_axis, name) -> tuple[np.ndarray, tuple[int, ...]]:
    try:
        return to_planes(image, in_channels, rgb=rgb, channel_axis=channel_axis)
    except ImageLayoutError as exc:
        raise TrainingDataError(f"{name or 'image'}: {exc}") from exc


def _one_plane(image, labels, normalization, in_channels, kind, channel_axis, name) -> LabeledImage:
    planes, lead = _planes(image, in_channels, None, channel_axis, name)
    if lead:
        raise TrainingDataError(
            f"{name or 'image'} has plane axes {lead} besides the channels: training takes 2D "
            f"images; pass one plane (Z or T slice) at a time"
        )
    target = to_targets(labels, kind, planes.shape[-2:], name)
    return LabeledImage(normalize_channels(planes[0], normalization), target, name, kind)


def from_mask(
    image: np.ndarray,
    mask: np.ndarray,
    normalization: Normalization,
    in_channels: int = 1,
    channel_axis: int | None = None,
    name: str = "",
) -> LabeledImage:
    """A 2D image with a mask of class indices 0..C-1 (``-1`` may mark unlabeled pixels)."""
    return _one_plane(image, mask, normalization, in_channels, LabelKind.CLASS_INDEX, channel_axis, name)


def from_painted(
    image: np.ndarray,
    labels: np.ndarray,
    normalization: Normalization,
    in_channels: int = 1,
    channel_axis: int | None = None,
    name: str = "",
) -> LabeledImage:
    """A 2D image with painted labels: value v >= 1 is class v - 1, 0 is not annotated."""
    return _one_plane(image, labels, normalization, in_channels, LabelKind.PAINTED, channel_axis, name)


def check_training_data(items: list[LabeledImage], num_classes: int, patch_size: int) -> None:
    """Raise ``TrainingDataError`` unless ``items`` can train a ``num_classes`` model on patches."""
    if not items:
        raise TrainingDataError("no training images were given")
    channels = {item.image.shape[0] for item in items}
    if len(channels) > 1:
        raise TrainingDataError(f"the training images have different channel counts {sorted(channels)}")
    for item in items:
        if item.image.ndim != 3 or item.target.shape != item.image.shape[1:]:
            raise TrainingDataError(
                f"{item.name or 'an image'}: image {item.image.shape} and target {item.target.shape} do not match"
            )
    check_classes([item.labeled() for item in items], num_classes)
    for item in items:
        if item.labeled_pixels:
            check_fits(item, patch_size)


def check_fits(item: LabeledImage, patch_size: int) -> None:
    """Raise ``TrainingDataError`` if ``item`` is narrower than a training patch."""
    height, width = item.target.shape
    if min(height, width) < patch_size:
        raise TrainingDataError(
            f"{item.name or 'an image'} is {height}×{width} pixels, smaller than the patch size "
            f"{patch_size}: choose a patch size of at most {min(height, width)}"
        )


def _block_class_counts(target: np.ndarray, block: int, num_classes: int) -> np.ndarray:
    """Labeled pixels of each class in each ``block``² square: (block rows, block columns, classes)."""
    height, width = target.shape
    rows, cols = -(-height // block), -(-width // block)
    padded = np.full((rows * block, cols * block), IGNORE_INDEX, dtype=target.dtype)
    padded[:height, :width] = target
    tiles = padded.reshape(rows, block, cols, block)
    return np.stack([(tiles == k).sum(axis=(1, 3)) for k in range(num_classes)], axis=-1)


def split_validation(
    items: list[LabeledImage], fraction: float, seed: int = 0, block: int = 32
) -> tuple[list[LabeledImage], list[LabeledImage]]:
    """Hold out about ``fraction`` of the labeled pixels, in square blocks of ``block`` pixels.

    Each item's labels go either to its training copy or to its validation copy (unlabeled in
    the other), so the two never share a labeled pixel; whole blocks keep validation pixels
    away from most training pixels. Blocks are drawn at random, skipping any that would take
    the last training pixels of a class or an up-weighted pixel (a correction). Items without
    labels on one side are left out of it.
    """
    if not 0.0 < fraction < 1.0:
        raise SettingsError(f"the validation fraction must be between 0 and 1, got {fraction}")
    if block < 1:
        raise ValueError(f"the block size must be positive, got {block}")
    too_few = TrainingDataError(
        "too few labeled pixels to hold some out for validation: paint more, or give validation images"
    )
    num_classes = max((int(item.target.max()) + 1 for item in items if item.target.size), default=0)
    if num_classes == 0:
        raise too_few
    candidates = []  # (item index, block row, block column, labeled pixels per class)
    for index, item in enumerate(items):
        counts = _block_class_counts(item.target, block, num_classes)
        holdable = counts.sum(axis=-1) > 0
        if item.weight is not None:  # blocks holding an up-weighted pixel (a correction) stay in training
            holdable &= _block_class_counts(np.where(item.weight > 1, 0, IGNORE_INDEX), block, 1)[..., 0] == 0
        candidates.extend((index, r, c, counts[r, c]) for r, c in zip(*np.nonzero(holdable)))
    remaining = sum((counts for *_, counts in candidates), np.zeros(num_classes, dtype=np.int64))
    wanted, held, chosen = fraction * remaining.sum(), 0, []
    for i in np.random.default_rng(seed).permutation(len(candidates)):
        counts = candidates[i][3]
        if ((counts > 0) & (counts == remaining)).any():
            continue  # the last training pixels of a class stay in training
        chosen.append(candidates[i])
        remaining = remaining - counts
        held += int(counts.sum())
        if held >= wanted:
            break
    if not chosen:
        raise too_few
    val_mask = [np.zeros(item.target.shape, dtype=bool) for item in items]
    for index, r, c, _ in chosen:
        val_mask[index][r * block : (r + 1) * block, c * block : (c + 1) * block] = True
    train, val = [], []
    for item, mask in zip(items, val_mask):
        for side, keep in ((train, ~mask), (val, mask)):
            target = np.where(keep, item.target, IGNORE_INDEX)
            if (target != IGNORE_INDEX).any():
                side.append(replace(item, target=target))
    return train, val


def labeled_box_area(items: list[LabeledImage]) -> int:
    """Summed area of each item's bounding box of labeled pixels."""
    area = 0
    for item in items:
        labeled = item.target != IGNORE_INDEX
        rows, cols = np.flatnonzero(labeled.any(axis=1)), np.flatnonzero(labeled.any(axis=0))
        if rows.size:
            area += (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    return int(area)


class PatchSampler:
    """Random square training patches, each containing labeled pixels, from images of any size.

    A patch is placed around a labeled pixel drawn uniformly from all labeled pixels (at a random
    position inside the patch, clamped to the image), so a small painted region on a huge image
    trains as well as a full mask. ``augment`` adds random 90° rotations and flips. Memory per
    image is one count per row, whatever the image size.
    """

    def __init__(self, items: list[LabeledImage], patch_size: int, rng: np.random.Generator, augment: bool = True):
        self.items = [item for item in items if item.labeled_pixels]
        if not self.items:
            raise TrainingDataError("there are no labeled pixels to sample training patches from")
        self.patch_size, self.rng, self.augment = patch_size, rng, augment
        self.row_ends = [np.cumsum((item.target != IGNORE_INDEX).sum(axis=1)) for item in self.items]
        self.item_ends = np.cumsum([ends[-1] for ends in self.row_ends])

    def _nth_labeled_pixel(self, n: int) -> tuple[LabeledImage, int, int]:
        index = int(np.searchsorted(self.item_ends, n, side="right"))
        n -= int(self.item_ends[index - 1]) if index else 0
        ends = self.row_ends[index]
        row = int(np.searchsorted(ends, n, side="right"))
        n -= int(ends[row - 1]) if row else 0
        item = self.items[index]
        return item, row, int(np.flatnonzero(item.target[row] != IGNORE_INDEX)[n])

    def _around_a_labeled_pixel(self) -> tuple[LabeledImage, int, int]:
        size, rng = self.patch_size, self.rng
        item, row, col = self._nth_labeled_pixel(int(rng.integers(self.item_ends[-1])))
        height, width = item.target.shape
        top = min(max(row - int(rng.integers(size)), 0), height - size)
        left = min(max(col - int(rng.integers(size)), 0), width - size)
        return item, top, left

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """A batch: images (B, Cin, P, P) float32, targets (B, P, P) int64 and the per-pixel loss
        weights (B, P, P) float32, ``None`` when no item has weights."""
        size, rng = self.patch_size, self.rng
        images = np.empty((batch_size, self.items[0].image.shape[0], size, size), dtype=np.float32)
        targets = np.empty((batch_size, size, size), dtype=np.int64)
        weighted = any(item.weight is not None for item in self.items)
        weights = np.ones((batch_size, size, size), dtype=np.float32) if weighted else None
        for b in range(batch_size):
            item, top, left = self._around_a_labeled_pixel()
            image = item.image[:, top : top + size, left : left + size]
            target = item.target[top : top + size, left : left + size]
            weight = None if item.weight is None else item.weight[top : top + size, left : left + size]
            if self.augment:
                turns = int(rng.integers(4))
                image, target = np.rot90(image, turns, axes=(1, 2)), np.rot90(target, turns)
                weight = None if weight is None else np.rot90(weight, turns)
                if rng.random() < 0.5:
                    image, target = image[..., ::-1], target[..., ::-1]
                    weight = None if weight is None else weight[..., ::-1]
            images[b], targets[b] = image, target
            if weight is not None:
                weights[b] = weight
        return images, targets, weights


def grid_crops(items: list[LabeledImage], size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut ``items`` into a grid of ``size`` crops that contain labels, each pixel counted once.

    Returns stacks (images (N, Cin, h, w), targets (N, h, w)), one per crop shape (images smaller
    than ``size`` give smaller crops). Edge crops are shifted inside the image; their pixels that
    an earlier crop already holds are marked unlabeled.
    """
    groups: dict[tuple[int, int], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for item in items:
        height, width = item.target.shape
        crop_h, crop_w = min(size, height), min(size, width)
        for y0 in range(0, height, crop_h):
            top = min(y0, height - crop_h)
            for x0 in range(0, width, crop_w):
                left = min(x0, width - crop_w)
                target = item.target[top : top + crop_h, left : left + crop_w].copy()
                target[: y0 - top] = IGNORE_INDEX
                target[:, : x0 - left] = IGNORE_INDEX
                if (target != IGNORE_INDEX).any():
                    images, targets = groups.setdefault((crop_h, crop_w), ([], []))
                    images.append(item.image[:, top : top + crop_h, left : left + crop_w])
                    targets.append(target)
    return [(np.stack(images), np.stack(targets)) for images, targets in groups.values()]
