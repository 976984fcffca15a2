"""The labeled data sets and light levels every benchmark uses: where the data lies
(``CELLPREP_DATA``, else ``../shared/data`` beside the checkout), each set's class names, the
low-light conditions, and the paper comparison's folds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks.harness.degrade import LowLight
from napari_cellprep.engine.images.io import find_pairs, read_image, read_mask
from napari_cellprep.engine.images.metrics import kfold_splits

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CELLPREP_DATA", REPO.parent / "shared" / "data"))

CLASS_NAMES = {
    "nist-phase": ["background", "colony"],
    "isbi2012-membrane": ["interior", "membrane"],
    "vnc-em": ["background", "membrane", "mitochondria"],
}


CONDITIONS = {
    "clean": None,
    "low-light": LowLight(photons=20.0, read_noise=2.0),
    "very-low-light": LowLight(photons=5.0, read_noise=2.0),
}


def load_dataset(
    name: str, condition: str, limit: int | None = None
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(raw image, mask, name) triples; low-light conditions degrade each image with a fixed seed."""
    if not (DATA / name).is_dir():
        raise SystemExit(
            f"no labeled set {name!r} at {DATA / name}: put it there (images/ and masks/), or point "
            "CELLPREP_DATA at the folder that holds it"
        )
    pairs = find_pairs(DATA / name / "images", DATA / name / "masks")[:limit]
    level = CONDITIONS[condition]
    items = []
    for index, (image_path, mask_path) in enumerate(pairs):
        image = read_image(image_path)
        if level is not None:
            image = level.apply(image, seed=10_000 + index)
        items.append((image, read_mask(mask_path), image_path.stem))
    return items


def split(n: int, folds: int, fold: int) -> tuple[list[int], list[int], list[int]]:
    """Train / validation / test indices: the k-fold test fold, 10% of the rest for validation
    (the same for every seed and method)."""
    train_idx, test_idx = kfold_splits(n, folds, 0)[fold]
    rng = np.random.default_rng(fold)
    train_idx = rng.permutation(train_idx)
    n_val = max(1, round(0.1 * len(train_idx)))
    return sorted(train_idx[n_val:].tolist()), sorted(train_idx[:n_val].tolist()), sorted(test_idx.tolist())


SETS = ("nist-phase", "isbi2012-membrane", "vnc-em")
CROP = 512
"""vnc-em images (1024²) are cut to their central CROP² pixels."""


def held_out(dataset: str) -> list[int]:
    """Image indices (in the sorted set) to use, in a fixed order: for nist-phase the bundled
    model's test tiles (every fifth, scripts/train_default.py), for the others every image."""
    n = len(find_pairs(DATA / dataset / "images", DATA / dataset / "masks"))
    candidates = np.arange(0, n, 5) if dataset == "nist-phase" else np.arange(n)
    return [int(i) for i in np.random.default_rng(0).permutation(candidates)]


def load_case(dataset: str, condition: str, index: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(image, mask, name); low light as ``load_dataset`` makes it (same seeds), then
    vnc-em's central crop."""
    pairs = find_pairs(DATA / dataset / "images", DATA / dataset / "masks")
    image_path, mask_path = pairs[index]
    image, mask = read_image(image_path), read_mask(mask_path)
    level = CONDITIONS[condition]
    if level is not None:
        image = level.apply(image, seed=10_000 + index)
    if max(mask.shape) > CROP:
        top, left = (mask.shape[0] - CROP) // 2, (mask.shape[1] - CROP) // 2
        image, mask = image[top : top + CROP, left : left + CROP], mask[top : top + CROP, left : left + CROP]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask), image_path.stem
