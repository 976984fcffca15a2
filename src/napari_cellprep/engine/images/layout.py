"""Image layout, one rule for every face (CLI, docks, scripts): which axis holds the channels,
how RGB(A) meets a model, and which axes are planes.

- RGB(A): colours on the last axis. A napari layer says so with its ``rgb`` flag; for an array
  from a file (``rgb=None``) napari's own guess decides (3+ axes, the last of 3 or 4 entries,
  the two before it longer than 30). Alpha is transparency, not signal: it is dropped (unless
  the model takes 4 channels). A one-channel model reads the mean of the colours, a
  three-channel model the colours; a new model trained on RGB(A) images takes 3 channels.
- Otherwise the channels are on ``channel_axis`` when it is given. A one-channel model needs
  none; a multi-channel model finds the one axis before Y, X with that many entries.
- Every other axis before the last two (Y, X) is a plane axis (Z, T, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ImageLayoutError

RGB_MIN_SIDE = 30
"""napari's ``guess_rgb``: an RGB(A) image's Y and X are longer than this."""


def is_rgb(shape: Sequence[int]) -> bool:
    """Whether an array of ``shape`` from a file is an RGB(A) image (napari's guess)."""
    return len(shape) > 2 and shape[-1] in (3, 4) and all(side > RGB_MIN_SIDE for side in shape[-3:-1])


def _check(shape: Sequence[int], dtype: np.dtype | None = None) -> None:
    if len(shape) < 2:
        raise ImageLayoutError(f"an image needs at least two axes (Y, X); got shape {tuple(shape)}")
    if 0 in shape:
        raise ImageLayoutError(f"the image is empty (shape {tuple(shape)})")
    if dtype is not None and dtype.kind not in "buif":
        raise ImageLayoutError(f"images must hold integer or float intensities, got dtype {dtype}")


def _rgb(shape: Sequence[int], rgb: bool | None, channel_axis: int | None) -> bool:
    if channel_axis is not None:
        return False
    return is_rgb(shape) if rgb is None else bool(rgb)


def _explicit_axis(shape: Sequence[int], channel_axis: int) -> int:
    ndim = len(shape)
    if not -ndim <= channel_axis < ndim:
        raise ImageLayoutError(f"channel axis {channel_axis} does not exist: the image has {ndim} axes")
    if ndim < 3:
        raise ImageLayoutError("a channel axis needs an image with at least three axes")
    return channel_axis % ndim


def input_channels(shape: Sequence[int], *, rgb: bool | None = None, channel_axis: int | None = None) -> int:
    """How many input channels a new model trained on images of ``shape`` takes."""
    _check(shape)
    if channel_axis is not None:
        return int(shape[_explicit_axis(shape, channel_axis)])
    return 3 if _rgb(shape, rgb, channel_axis) else 1


def find_channel_axis(
    shape: Sequence[int], in_channels: int, *, rgb: bool | None = None, channel_axis: int | None = None
) -> int | None:
    """The (non-negative) axis holding the channels or colours a model with ``in_channels``
    inputs reads; ``None`` for a one-channel image."""
    _check(shape)
    ndim = len(shape)
    if channel_axis is not None:
        axis = _explicit_axis(shape, channel_axis)
        if shape[axis] != in_channels:
            raise ImageLayoutError(
                f"axis {channel_axis} of the image has {shape[axis]} entries but the model expects "
                f"{in_channels} channels; choose the right channel axis or another model"
            )
        return axis
    if _rgb(shape, rgb, channel_axis):
        if in_channels not in (1, 3, shape[-1]):
            raise ImageLayoutError(
                f"the model expects {in_channels} channels but this RGB image has {shape[-1]}; "
                f"choose a model trained on grayscale or RGB images"
            )
        return ndim - 1
    if in_channels == 1:
        return None
    candidates = [axis for axis, size in enumerate(shape[:-2]) if size == in_channels]
    if len(candidates) != 1:
        found = "no axis" if not candidates else f"axes {candidates}"
        raise ImageLayoutError(
            f"the model expects {in_channels} channels; the image of shape {tuple(shape)} has {found} of "
            f"that size before Y and X: give its channel axis (e.g. channel_axis=0 for (C, Y, X)) or "
            f"choose another model"
        )
    return candidates[0]


def model_input(
    image: np.ndarray, in_channels: int, *, rgb: bool | None = None, channel_axis: int | None = None
) -> tuple[np.ndarray, int | None]:
    """``image`` as a model with ``in_channels`` inputs reads it, and its channel axis.

    RGB(A) colours lose alpha (unless the model takes 4 channels) and are averaged for a
    one-channel model (float32, channel axis ``None``); otherwise the array is unchanged.
    """
    image = np.asarray(image)
    _check(image.shape, image.dtype)
    axis = find_channel_axis(image.shape, in_channels, rgb=rgb, channel_axis=channel_axis)
    if not _rgb(image.shape, rgb, channel_axis):
        return image, axis
    colours = image if in_channels == image.shape[-1] else image[..., :3]
    if in_channels == 1:
        return colours.mean(axis=-1, dtype=np.float32), None
    return colours, axis


def to_planes(
    image: np.ndarray, in_channels: int, *, rgb: bool | None = None, channel_axis: int | None = None
) -> tuple[np.ndarray, tuple[int, ...]]:
    """``image`` as (N, channels, H, W) planes (a view where possible) and the plane axes' shape.

    The plane shape is e.g. ``(Z,)``, ``()`` for a single 2D image. The last two axes other than
    the channel axis are Y and X.
    """
    array, axis = model_input(image, in_channels, rgb=rgb, channel_axis=channel_axis)
    if axis is None:
        return array.reshape((-1, 1) + array.shape[-2:]), tuple(array.shape[:-2])
    moved = np.moveaxis(array, axis, -3)
    return moved.reshape((-1,) + moved.shape[-3:]), tuple(moved.shape[:-3])
