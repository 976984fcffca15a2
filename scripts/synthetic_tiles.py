"""Synthetic labeled tiles of generic cell-image structures, to widen what the bundled model has seen.

The bundled model may only be trained on data we can redistribute (nist-phase), whose structures
are large phase-contrast colonies; fine-tuning it on other images (thin membranes in EM, small
blobs) starts from features that do not separate them (docs/results/variants/scribbles/README.md: a linear
probe on its features reaches 0.41–0.48 on ISBI 2012 where the random forest reaches 0.67–0.70).
These tiles are drawn, not collected: a **tessellation** (Voronoi cells with boundaries 1–4 px
wide, class 1, as membranes between cells) or **blobs** (ellipses 3–30 px in radius, class 1, as
nuclei or organelles), on a smooth random texture, either polarity, blurred and noisy at a random
level. Class 0 is everything else, so class 1 means "the structure", as colony does in nist-phase.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.draw import ellipse
from skimage.segmentation import find_boundaries

KINDS = ("tessellation", "blobs")


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random field, unit standard deviation, at a random scale (2–16 px)."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), float(rng.uniform(2.0, 16.0)))
    return (field - field.mean()) / (field.std() + 1e-12)


def _tessellation(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell labels of a Voronoi tessellation and its boundaries 1–4 px wide (bool)."""
    seeds = rng.uniform(0, size, (int(rng.integers(8, 60)), 2))
    rows, cols = np.mgrid[:size, :size]
    cells = cKDTree(seeds).query(np.column_stack([rows.ravel(), cols.ravel()]))[1].reshape(size, size)
    width = int(rng.integers(1, 5))
    boundary = find_boundaries(cells, mode="inner")
    if width > 2:
        boundary = ndimage.binary_dilation(boundary, iterations=(width - 1) // 2)
    return cells, boundary


def _blobs(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Object labels of 5–40 random ellipses (later ones on top) and their union (bool)."""
    objects = np.zeros((size, size), dtype=np.int32)
    for index in range(1, int(rng.integers(5, 41)) + 1):
        radius = float(rng.uniform(3.0, 30.0))
        rr, cc = ellipse(
            rng.uniform(0, size), rng.uniform(0, size), radius, radius * float(rng.uniform(0.4, 1.0)),
            shape=(size, size), rotation=float(rng.uniform(0, np.pi)),
        )
        objects[rr, cc] = index
    return objects, objects > 0


def _warp(rng: np.random.Generator, *maps: np.ndarray) -> list[np.ndarray]:
    """The same smooth random deformation (up to about 12 px, on a 16–48 px scale) of each label
    map, so that straight Voronoi edges and exact ellipses curve as membranes and cells do."""
    size = maps[0].shape[0]
    scale, amplitude = float(rng.uniform(16.0, 48.0)), float(rng.uniform(0.0, 12.0))
    shift = [
        amplitude * _unit(ndimage.gaussian_filter(rng.standard_normal((size, size)), scale)) for _ in range(2)
    ]
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    coordinates = np.stack([np.clip(rows + shift[0], 0, size - 1), np.clip(cols + shift[1], 0, size - 1)])
    return [ndimage.map_coordinates(m, coordinates, order=0) for m in maps]


def _unit(field: np.ndarray) -> np.ndarray:
    """``field`` scaled so that its largest magnitude is 1."""
    return field / (np.abs(field).max() + 1e-12)


def synthetic_tile(
    rng: np.random.Generator, size: int = 256, kind: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One tile: image (size, size) float32 in 0..1 and mask uint8 (1 = the structure, 0 = the rest).

    ``kind`` is one of ``KINDS`` (``None``: drawn at random). Regions (cells, objects) get their
    own brightness and the structure a contrast of either sign, all smoothly deformed (``_warp``);
    then texture, blur (σ 0–2 px) and Gaussian noise (σ 0–0.5 of the structure's contrast).
    """
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    regions, structure = (_tessellation if kind == "tessellation" else _blobs)(rng, size)
    regions, structure = _warp(rng, regions, structure.astype(np.uint8))
    structure = structure.astype(bool)
    contrast = float(rng.uniform(0.5, 2.0)) * float(rng.choice([-1.0, 1.0]))
    shades = rng.normal(0.0, 0.3, regions.max() + 1)
    image = shades[regions] + contrast * structure + float(rng.uniform(0.1, 0.8)) * _texture(rng, size)
    image = ndimage.gaussian_filter(image, float(rng.uniform(0.0, 2.0)))
    image = image + rng.normal(0.0, float(rng.uniform(0.0, 0.5)) * abs(contrast), image.shape)
    low, high = float(image.min()), float(image.max())
    return ((image - low) / (high - low)).astype(np.float32), structure.astype(np.uint8)
