"""Axis conventions: turn any supported image into planes of (channels, H, W)."""

from __future__ import annotations

import numpy as np

from .errors import ImageLayoutError


def channel_axis_for(image_shape: tuple[int, ...], in_channels: int, channel_axis: int | None = None) -> int | None:
    """The channel axis of an image for a model with ``in_channels`` inputs.

    Grayscale models (``in_channels == 1``) read every axis before the last two as planes
    (Z, T, ...). Multi-channel models need ``channel_axis``, except for a 3D image whose
    last axis has ``in_channels`` entries (RGB/RGBA, channel-last), which is recognised.
    """
    ndim = len(image_shape)
    if ndim < 2:
        raise ImageLayoutError(f"an image needs at least two axes (Y, X); got shape {image_shape}")
    if channel_axis is not None:
        axis = channel_axis % ndim
        if image_shape[axis] != in_channels:
            raise ImageLayoutError(
                f"axis {channel_axis} of the image has {image_shape[axis]} entries but the model "
                f"expects {in_channels} channels; choose the right channel axis or another model"
            )
        if ndim < 3:
            raise ImageLayoutError("a channel axis needs an image with at least three axes")
        return axis
    if in_channels == 1:
        return None
    if ndim == 3 and image_shape[-1] == in_channels:
        return ndim - 1
    raise ImageLayoutError(
        f"the model expects {in_channels} channels; image of shape {image_shape} needs its channel "
        f"axis given (e.g. channel_axis=0 for (C, Y, X))"
    )


def to_planes(image: np.ndarray, in_channels: int, channel_axis: int | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Reshape to (N, channels, H, W) (a view where possible) and return the leading shape.

    The leading shape is that of the plane axes (e.g. ``(Z,)``), ``()`` for a single 2D image.
    The last two axes of ``image`` must be Y and X unless ``channel_axis`` is one of them.
    """
    axis = channel_axis_for(image.shape, in_channels, channel_axis)
    if axis is None:
        planes = image.reshape((-1, 1) + image.shape[-2:])
        return planes, tuple(image.shape[:-2])
    moved = np.moveaxis(image, axis, -3)
    leading = tuple(moved.shape[:-3])
    return moved.reshape((-1,) + moved.shape[-3:]), leading
