"""A simulated annotator for benchmarks/loop/scribbles.py: short brush strokes inside one class each,
and where to put the next ones (numpy, scipy and scikit-image only).

A stroke is a random walk with momentum (a short, gently bending polyline) whose centre line
stays inside its class eroded by the brush radius, drawn with a round brush of ``brush`` pixels;
so every painted pixel lies inside the stroke's class. Seeds are drawn uniformly (random
strokes), greedily at the maxima of a score map (branch disagreement, errors), or at random with
probability proportional to the score (an annotator following a heat map), spaced apart.
Everything is deterministic for a given ``numpy.random.Generator`` seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk


@dataclass
class Stroke:
    """One painted stroke: its class and the (row, column) pixels it covers."""

    cls: int
    rows: np.ndarray
    cols: np.ndarray


def brush_footprint(brush: int) -> np.ndarray:
    """The round brush, ``brush`` pixels across (odd sizes: 1, 3, 5, ...)."""
    return disk(max(0, (brush - 1) // 2)).astype(bool)


def paintable(mask: np.ndarray, cls: int, brush: int) -> np.ndarray:
    """Where a stroke's centre line may go so that the brush stays inside class ``cls``."""
    region = mask == cls
    footprint = brush_footprint(brush)
    if footprint.size == 1:
        return region
    return ndi.binary_erosion(region, structure=footprint, border_value=0)


def walk(start: tuple[int, int], allowed: np.ndarray, length: int, rng: np.random.Generator,
         turn: float = 0.35) -> np.ndarray:
    """A random walk with momentum of about ``length`` unit steps from ``start`` inside ``allowed``:
    (n, 2) integer points, consecutive points 8-connected. When blocked it tries turns of up to
    ±90°, then stops; it then continues from ``start`` the other way for the remaining length."""
    height, width = allowed.shape
    points = [tuple(start)]
    heading = rng.uniform(0, 2 * np.pi)
    for direction in (0.0, np.pi):
        pos = np.array(start, dtype=float)
        angle = heading + direction
        chain = []
        for _ in range(3 * length):
            if len(points) + len(chain) >= length + 1:
                break
            angle += rng.normal(0.0, turn)
            moved = False
            for delta in (0.0, 0.4, -0.4, 0.8, -0.8, 1.2, -1.2, 1.57, -1.57):
                a = angle + delta
                nxt = pos + (np.sin(a), np.cos(a))
                r, c = int(round(nxt[0])), int(round(nxt[1]))
                if 0 <= r < height and 0 <= c < width and allowed[r, c]:
                    if (r, c) != (int(round(pos[0])), int(round(pos[1]))):
                        chain.append((r, c))
                    pos, angle, moved = nxt, a, True
                    break
            if not moved:
                break
        if direction == 0.0:
            points.extend(chain)
        else:
            points[:0] = chain[::-1]
    return np.array(points, dtype=int)


def draw_stroke(cls: int, centre: np.ndarray, shape: tuple[int, int], brush: int) -> Stroke:
    """The pixels a round ``brush`` covers along the centre-line points ``centre``."""
    line = np.zeros(shape, dtype=bool)
    line[centre[:, 0], centre[:, 1]] = True
    footprint = brush_footprint(brush)
    painted = ndi.binary_dilation(line, structure=footprint) if footprint.size > 1 else line
    rows, cols = np.nonzero(painted)
    return Stroke(cls, rows, cols)


def pick_seeds(score: np.ndarray, allowed: np.ndarray, count: int, min_distance: int,
               smooth: float = 2.0) -> list[tuple[int, int]]:
    """Up to ``count`` pixels of ``allowed`` at the highest values of ``score`` (Gaussian-smoothed
    by ``smooth`` pixels so that isolated pixels do not win), greedily, each at least
    ``min_distance`` from the others. Stops early where no allowed pixel with a positive score
    is left."""
    smoothed = ndi.gaussian_filter(np.asarray(score, dtype=np.float64), smooth) if smooth else np.asarray(score, float)
    values = np.where(allowed, smoothed, -np.inf)
    seeds: list[tuple[int, int]] = []
    height, width = values.shape
    rr, cc = np.ogrid[:height, :width]
    for _ in range(count):
        index = int(np.argmax(values))
        r, c = divmod(index, width)
        if not np.isfinite(values[r, c]) or values[r, c] <= 0:
            break
        seeds.append((r, c))
        values[(rr - r) ** 2 + (cc - c) ** 2 < min_distance**2] = -np.inf
    return seeds


def sample_seeds(score: np.ndarray, allowed: np.ndarray, count: int, min_distance: int,
                 rng: np.random.Generator, smooth: float = 2.0) -> list[tuple[int, int]]:
    """Up to ``count`` pixels of ``allowed`` drawn one after another with probability proportional
    to ``score`` (Gaussian-smoothed by ``smooth`` pixels), each at least ``min_distance`` from the
    others: uncertain places are likelier, but the strokes spread over all of them. Stops early
    where no allowed pixel with a positive score is left."""
    smoothed = ndi.gaussian_filter(np.asarray(score, dtype=np.float64), smooth) if smooth else np.asarray(score, float)
    weights = np.where(allowed, np.clip(smoothed, 0.0, None), 0.0).ravel()
    width = score.shape[1]
    rr, cc = np.divmod(np.arange(weights.size), width)
    seeds: list[tuple[int, int]] = []
    for _ in range(count):
        total = weights.sum()
        if total <= 0:
            break
        index = int(rng.choice(weights.size, p=weights / total))
        r, c = divmod(index, width)
        seeds.append((r, c))
        weights[(rr - r) ** 2 + (cc - c) ** 2 < min_distance**2] = 0.0
    return seeds


def per_class(total: int, num_classes: int) -> list[int]:
    """``total`` strokes shared as evenly as possible between the classes (first classes get
    the remainder)."""
    return [total // num_classes + (k < total % num_classes) for k in range(num_classes)]


def add_strokes(mask: np.ndarray, total: int, rng: np.random.Generator, *, brush: int = 3,
                length: int = 30, painted: np.ndarray | None = None, score: np.ndarray | None = None,
                margin: int = 2, sample: bool = False, within: np.ndarray | None = None) -> list[Stroke]:
    """``total`` new strokes, balanced over the classes of ``mask`` (class indices 0..C-1).

    Seeds avoid pixels within ``margin`` of what is already ``painted`` (labels, 0 = none). With
    ``score`` None seeds are uniform over each class's paintable area; otherwise they are the
    maxima of ``score`` there (``pick_seeds``, spaced by half a stroke length), or with ``sample``
    drawn in proportion to it (``sample_seeds``), topped up at random where the score has no
    positive value left. ``within`` (bool, optional) restricts the seeds to an area, such as the
    squares a cue shows, where the class has room there. A class too thin for the brush is
    painted with a 1-pixel brush instead.
    """
    num_classes = int(mask.max()) + 1
    free = np.ones(mask.shape, dtype=bool)
    if painted is not None and painted.any():
        free = ~ndi.binary_dilation(painted > 0, iterations=margin)
    strokes: list[Stroke] = []
    for cls, count in enumerate(per_class(total, max(num_classes, 1))):
        if count == 0 or not (mask == cls).any():
            continue
        size = brush
        allowed = paintable(mask, cls, size)
        if not allowed.any():
            size, allowed = 1, mask == cls
        allowed_free = allowed & free
        if not allowed_free.any():
            allowed_free = allowed
        if within is not None and (allowed_free & within).any():
            allowed_free = allowed_free & within
        spacing = max(1, length // 2)
        if score is None:
            seeds = []
        elif sample:
            seeds = sample_seeds(score, allowed_free, count, spacing, rng)
        else:
            seeds = pick_seeds(score, allowed_free, count, spacing)
        if len(seeds) < count:
            pool = np.flatnonzero(allowed_free)
            taken = set(seeds)
            for index in rng.choice(pool, size=min(len(pool), count - len(seeds) + len(taken)), replace=False):
                seed = divmod(int(index), mask.shape[1])
                if seed not in taken and len(seeds) < count:
                    seeds.append(seed)
        for seed in seeds:
            centre = walk(seed, allowed, length, rng)
            strokes.append(draw_stroke(cls, centre, mask.shape, size))
    return strokes


def paint(strokes: list[Stroke], shape: tuple[int, int], labels: np.ndarray | None = None) -> np.ndarray:
    """Napari-style painted labels (value = class + 1, 0 = not annotated) with ``strokes`` added
    (later strokes paint over earlier ones)."""
    out = np.zeros(shape, dtype=np.uint8) if labels is None else labels.copy()
    for stroke in strokes:
        out[stroke.rows, stroke.cols] = stroke.cls + 1
    return out
