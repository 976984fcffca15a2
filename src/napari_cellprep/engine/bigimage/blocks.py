"""Blocks of an image predicted one at a time, equal to the in-memory tiled prediction.

The image is cut into square output blocks of ``block`` pixels (the last ones shorter), a
multiple of the tile stride, so every block boundary lies on the global tile grid of
``engine.inference``. A block is predicted from every tile of that grid that reaches into it
(a halo of at least one tile on each inner side), normalised with statistics of the whole image
and blended with the same windows and weight sums in the same order as the in-memory pass, so
each output pixel is computed by the same operations (tests/test_outofcore.py checks labels).
Memory per block: the input window, the block's accumulators and one batch of tiles in torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...model import SegmentationNet
from ...model.config import ModelConfig
from ...model.networks import pad_mode
from ..classifier.fast import FastClassifier
from ..classifier.features import halo
from ..errors import SettingsError
from ..images.normalize import Normalization, normalize_channels
from ..images.planes import LazyPlanes
from ..prediction.inference import (
    _Axis,
    _effective_tiling,
    _plan_axis,
    _store,
    output_dtype,
    output_shapes,
    predict_block,
)

BLOCK_BUDGET = 128 * 2**20
"""Bytes of float32 maps one block may accumulate when no block size is given."""
MAX_BLOCK = 4096


def default_block(stride: int, maps: int) -> int:
    """A block side (a multiple of ``stride``) whose ``maps`` float32 maps fit ``BLOCK_BUDGET``."""
    side = min(MAX_BLOCK, int(math.sqrt(BLOCK_BUDGET / (4 * maps))))
    return max(1, side // stride) * stride


@dataclass(frozen=True)
class BlockGrid:
    """The global tile grid of one image plane and its output blocks.

    Only the numbers travel to worker processes; each rebuilds (once) the axes' windows.
    """

    height: int
    width: int
    tile: int  # effective: a multiple of the model's size multiple, as are the overlap's stride
    overlap: int
    multiple: int
    block: int

    @property
    def y(self) -> _Axis:
        return _axis(self.height, self.tile, self.overlap, self.multiple)

    @property
    def x(self) -> _Axis:
        return _axis(self.width, self.tile, self.overlap, self.multiple)

    @property
    def mode(self) -> str:
        """How the network would pad the whole plane."""
        return pad_mode(self.height, self.width, self.multiple)

    @property
    def counts(self) -> tuple[int, int]:
        """Blocks along Y and X."""
        return -(-self.y.size // self.block), -(-self.x.size // self.block)

    def region(self, by: int, bx: int) -> tuple[slice, slice]:
        """The output pixels of block (by, bx)."""
        b = self.block
        return slice(by * b, min((by + 1) * b, self.y.size)), slice(bx * b, min((bx + 1) * b, self.x.size))


def plan_grid(
    height: int, width: int, config: ModelConfig, tile: int, overlap: int, block: int | None, maps: int
) -> BlockGrid:
    """The tiling ``predict_iter`` uses for a (height, width) plane, cut into blocks of ``block``
    pixels rounded down to the tile stride (``None``: ``default_block``)."""
    multiple = config.size_multiple
    tile, overlap = _effective_tiling(tile, overlap, multiple)
    stride = tile - overlap
    if block is None:
        block = default_block(stride, maps)
    elif block < stride:
        raise SettingsError(f"block {block} is smaller than the tile stride {stride}; use a larger block")
    return BlockGrid(height, width, tile, overlap, multiple, block // stride * stride)


@functools.lru_cache(maxsize=16)
def _axis(size: int, tile: int, overlap: int, multiple: int) -> _Axis:
    return _plan_axis(size, tile, overlap, multiple)


def _reaching(axis: _Axis, span: slice) -> list[int]:
    """The tiles along ``axis`` that cover any pixel of ``span``."""
    return [k for k, o in enumerate(axis.origins) if o < span.stop and o + axis.tile > span.start]


def _local(index: slice | np.ndarray, start: int) -> slice | np.ndarray:
    """Image indices shifted into a window that starts at ``start``."""
    return slice(index.start - start, index.stop - start) if isinstance(index, slice) else index - start


def predict_region(
    model: SegmentationNet,
    planes: LazyPlanes,
    p: int,
    grid: BlockGrid,
    by: int,
    bx: int,
    stats: Sequence[tuple[float, float]],
    normalization: Normalization,
    config: ModelConfig,
    wanted: frozenset[str],
    *,
    batch_size: int = 4,
    precision: str = "float32",
    classifier: FastClassifier | None = None,
) -> dict[str, np.ndarray]:
    """Block (by, bx) of plane ``p``: ``{name: (*shape, h, w)}`` for every kept output;
    ``classifier``: the model's pixel classifier, which joins the ensemble as in ``predict``
    (its features read with their halo around the block, so they equal the whole plane's)."""
    rows, cols = grid.region(by, bx)
    ys, xs = _reaching(grid.y, rows), _reaching(grid.x, cols)
    top, left = grid.y.origins[ys[0]], grid.x.origins[xs[0]]
    bottom = min(grid.y.size, grid.y.origins[ys[-1]] + grid.y.tile)
    right = min(grid.x.size, grid.x.origins[xs[-1]] + grid.x.tile)
    window = planes.read(p, slice(top, bottom), slice(left, right))
    blended_shapes, kept = output_shapes(config, wanted)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    sums = {key: np.zeros(shape + (h, w), np.float32) for key, shape in blended_shapes.items()}
    tiles = [(i, j) for i in ys for j in xs]  # row-major: the order predict_iter adds them in
    for k in range(0, len(tiles), batch_size):
        batch = tiles[k : k + batch_size]
        block = np.stack([
            normalize_channels(
                window[:, _local(grid.y.source(i, grid.mode), top)][:, :, _local(grid.x.source(j, grid.mode), left)],
                normalization,
                stats,
            )
            for i, j in batch
        ])
        arrays = predict_block(model, block, wanted, precision=precision)
        for b, (i, j) in enumerate(batch):
            _add(sums, arrays, b, grid, i, j, rows, cols)
    weight = grid.y.weight_sum[rows, None] * grid.x.weight_sum[None, cols]
    blended = {key: total / weight for key, total in sums.items()}
    result = {key: np.empty((1, *shape, h, w), output_dtype(key, config.num_classes)) for key, shape in kept.items()}
    fast = None
    if classifier is not None:
        margin = halo(classifier.scales)
        y0, x0 = max(0, rows.start - margin), max(0, cols.start - margin)
        y1, x1 = min(grid.y.size, rows.stop + margin), min(grid.x.size, cols.stop + margin)
        context = normalize_channels(planes.read(p, slice(y0, y1), slice(x0, x1)), normalization, stats)
        probabilities = classifier.probabilities(context)
        fast = (probabilities[:, rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0], classifier.weight)
    _store(result, 0, slice(0, h), blended, fast)
    return {key: value[0] for key, value in result.items()}


def _add(sums: dict, arrays: dict, b: int, grid: BlockGrid, i: int, j: int, rows: slice, cols: slice) -> None:
    """Tile (i, j)'s weighted outputs added where it overlaps the block."""
    oy, ox = grid.y.origins[i], grid.x.origins[j]
    weight = grid.y.windows[i][:, None] * grid.x.windows[j][None, :]
    r0, r1 = max(oy, rows.start), min(oy + grid.y.tile, rows.stop)
    c0, c1 = max(ox, cols.start), min(ox + grid.x.tile, cols.stop)
    inside = (slice(r0 - oy, r1 - oy), slice(c0 - ox, c1 - ox))
    target = (slice(r0 - rows.start, r1 - rows.start), slice(c0 - cols.start, c1 - cols.start))
    for key, total in sums.items():
        value = arrays[key][b][..., inside[0], inside[1]] * weight[inside]
        total[..., target[0], target[1]] += value
