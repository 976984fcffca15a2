"""Where to paint next: the squares of an image where the branches disagree most.

Branch disagreement (``Prediction.disagreement``) is high where the model is unsure; labels
painted there teach it most. The squares lie on a grid of half their size, so a cluster of
uncertain pixels is never split between two squares that each look mild. Given what is already
painted, disagreement near the strokes is discounted (``coverage_discount``): the model has just
been taught there, and a cue that keeps pointing beside the old strokes teaches less than one that
spreads over the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

REGION_SIZE = 64
"""Side of a suggested region in pixels: about what a few brush strokes cover at a glance."""

COVERAGE_RADIUS = 32.0
"""Distance from the painted pixels (pixels) at which their discount has fallen to e^-1/2."""


@dataclass(frozen=True)
class Region:
    """A square of one plane: rows ``top:bottom``, columns ``left:right``, and its mean
    disagreement."""

    plane: tuple[int, ...]  # the plane's index in a stack, () for a 2D image
    top: int
    left: int
    bottom: int
    right: int
    score: float

    @property
    def center(self) -> tuple[float, float]:
        """(row, column) of the square's centre."""
        return (self.top + self.bottom) / 2, (self.left + self.right) / 2


def _origins(length: int, size: int) -> np.ndarray:
    stride = max(1, size // 2)
    return np.unique(np.append(np.arange(0, length - size + 1, stride), length - size))


def coverage_discount(painted: np.ndarray, radius: float = COVERAGE_RADIUS) -> np.ndarray:
    """1 − exp(−d² / 2r²) per pixel, d the distance to the nearest painted pixel of its plane
    (``painted``: (..., H, W), True or nonzero where annotated): 0 on the strokes, above 0.86 two
    radii away; all ones on a plane with nothing painted."""
    painted = np.asarray(painted) != 0
    out = np.ones(painted.shape, dtype=np.float64)
    for plane in np.ndindex(painted.shape[:-2]):
        if painted[plane].any():
            distance = ndi.distance_transform_edt(~painted[plane])
            out[plane] = -np.expm1(-(distance**2) / (2.0 * radius**2))
    return out


def uncertain_regions(
    disagreement: np.ndarray, size: int = REGION_SIZE, count: int = 5, painted: np.ndarray | None = None
) -> list[Region]:
    """The ``count`` most uncertain squares of ``size`` pixels, not overlapping, most uncertain
    first; ``disagreement`` is (..., H, W) in 0..1, ``painted`` (optional, same shape) the pixels
    already annotated, whose surroundings are discounted (``coverage_discount``; a square's score
    is then its mean discounted disagreement). On an image smaller than three squares across, the
    squares shrink to a third of it (at least 16 pixels), so that several fit."""
    disagreement = np.asarray(disagreement, dtype=np.float64)
    if painted is not None:
        if np.shape(painted) != disagreement.shape:
            raise ValueError(
                f"the painted labels have shape {np.shape(painted)}, the disagreement {disagreement.shape}: "
                "pass the labels of the image that was segmented"
            )
        disagreement = disagreement * coverage_discount(painted)
    height, width = disagreement.shape[-2:]
    size = min(size, max(16, min(height, width) // 3))
    side_y, side_x = min(size, height), min(size, width)
    rows, cols = _origins(height, side_y), _origins(width, side_x)
    candidates = []
    for plane in np.ndindex(disagreement.shape[:-2]):
        integral = np.zeros((height + 1, width + 1))
        integral[1:, 1:] = disagreement[plane].cumsum(0).cumsum(1)
        top, left = np.meshgrid(rows, cols, indexing="ij")
        sums = (
            integral[top + side_y, left + side_x]
            - integral[top, left + side_x]
            - integral[top + side_y, left]
            + integral[top, left]
        )
        means = sums / (side_y * side_x)
        candidates += [(means[i, j], plane, rows[i], cols[j]) for i, j in np.ndindex(means.shape)]
    candidates.sort(key=lambda c: -c[0])
    chosen: list[Region] = []
    for score, plane, top, left in candidates:
        if len(chosen) == count:
            break
        overlaps = any(
            r.plane == plane
            and top < r.bottom
            and r.top < top + side_y
            and left < r.right
            and r.left < left + side_x
            for r in chosen
        )
        if not overlaps:
            chosen.append(
                Region(plane, int(top), int(left), int(top + side_y), int(left + side_x), float(score))
            )
    return chosen
