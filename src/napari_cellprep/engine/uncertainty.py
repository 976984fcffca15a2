"""Where to paint next: the squares of an image where the branches disagree most.

Branch disagreement (``Prediction.disagreement``) is high where the model is unsure; labels
painted there teach it most. The squares lie on a grid of half their size, so a cluster of
uncertain pixels is never split between two squares that each look mild.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGION_SIZE = 64
"""Side of a suggested region in pixels: about what a few brush strokes cover at a glance."""


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


def uncertain_regions(disagreement: np.ndarray, size: int = REGION_SIZE, count: int = 5) -> list[Region]:
    """The ``count`` most uncertain squares of ``size`` pixels, not overlapping, most uncertain
    first; ``disagreement`` is (..., H, W) in 0..1. On an image smaller than three squares
    across, the squares shrink to a third of it (at least 16 pixels), so that several fit."""
    disagreement = np.asarray(disagreement, dtype=np.float64)
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
