"""An image's (N, channels, H, W) planes read window by window: ``layout.to_planes`` without
reading the image whole, for arrays that read lazily (zarr, memory-mapped TIFF, dask)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .layout import _check, _rgb, find_channel_axis


class LazyPlanes:
    """The planes ``to_planes`` makes of ``array``, each window read on demand.

    ``shape`` is (N, channels, H, W) and ``lead`` the shape of the plane axes; ``read`` returns
    a window of one plane with the values ``to_planes`` gives there (RGB(A) loses alpha and is
    averaged for a one-channel model). ``kept_axes`` are the input axes the outputs keep.
    """

    def __init__(
        self, array: Any, in_channels: int, *, rgb: bool | None = None, channel_axis: int | None = None
    ) -> None:
        shape = tuple(array.shape)
        _check(shape, np.dtype(array.dtype))
        self.array = array
        self.axis = find_channel_axis(shape, in_channels, rgb=rgb, channel_axis=channel_axis)
        self.rgb = _rgb(shape, rgb, channel_axis)
        self.average = self.rgb and in_channels == 1
        self.colours = slice(None) if not self.rgb or in_channels == shape[-1] else slice(0, 3)
        self.kept_axes = tuple(k for k in range(len(shape)) if k != self.axis)
        self.lead = tuple(shape[k] for k in self.kept_axes[:-2])
        channels = 1 if self.axis is None or self.average else len(range(shape[self.axis])[self.colours])
        self.shape = (math.prod(self.lead), channels, shape[self.kept_axes[-2]], shape[self.kept_axes[-1]])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.average else np.dtype(self.array.dtype)

    def read(self, p: int, rows: slice, cols: slice) -> np.ndarray:
        """Rows and columns of plane ``p`` as a (channels, h, w) array."""
        index: list[Any] = [slice(None)] * len(self.array.shape)
        for axis, k in zip(self.kept_axes[:-2], np.unravel_index(p, self.lead) if self.lead else ()):
            index[axis] = int(k)
        index[self.kept_axes[-2]], index[self.kept_axes[-1]] = rows, cols
        if self.axis is not None:
            index[self.axis] = self.colours
        window = np.asarray(self.array[tuple(index)])
        if self.axis is None:
            return window[None]
        if self.average:
            return window.mean(axis=-1, dtype=np.float32)[None]
        position = sum(axis < self.axis for axis in self.kept_axes[-2:])  # Y, X before the channels
        return np.moveaxis(window, position, 0)

    def read_rows(self, p: int, start: int, stop: int) -> np.ndarray:
        """Whole rows ``start:stop`` of plane ``p``."""
        return self.read(p, slice(start, stop), slice(None))
