"""From a napari Image layer's data to what a model takes (no Qt): channels, planes, scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def layer_array(data, multiscale: bool = False) -> np.ndarray:
    """The full-resolution pixels of an Image/Labels layer's data (dask/zarr read into memory)."""
    return np.asarray(data[0] if multiscale else data)


def model_input(image: np.ndarray, rgb: bool, in_channels: int) -> tuple[np.ndarray, int | None]:
    """The array and channel axis to give a model with ``in_channels`` inputs.

    An RGB(A) layer (``layer.rgb``, channel last) gives its colour channels to a 3-channel model
    and its mean intensity to a grayscale model (alpha dropped). A multichannel model on a
    non-RGB layer reads the first axis (before Y, X) holding ``in_channels`` entries.
    """
    if rgb:
        colours = image[..., :3] if image.shape[-1] == 4 and in_channels != 4 else image
        if in_channels == 1:
            return colours.mean(axis=-1, dtype=np.float32), None
        if colours.shape[-1] != in_channels:
            raise ValueError(
                f"the model expects {in_channels} channels but this RGB image has {image.shape[-1]}; "
                f"choose a model trained on {image.shape[-1]}-channel images"
            )
        return colours, image.ndim - 1
    if in_channels == 1:
        return image, None
    for axis, size in enumerate(image.shape[:-2]):
        if size == in_channels:
            return image, axis
    raise ValueError(
        f"the model expects {in_channels} channels but the image (shape {image.shape}) has no axis of "
        f"that size before Y and X; choose an image with {in_channels} channels or another model"
    )


def output_geometry(
    scale: Sequence[float], translate: Sequence[float], channel_axis: int | None, rgb: bool
) -> dict[str, tuple[float, ...]]:
    """``scale``/``translate`` for output layers (the input's, without a non-RGB channel axis)."""
    scale, translate = list(scale), list(translate)
    if channel_axis is not None and not rgb:
        del scale[channel_axis], translate[channel_axis]
    return {"scale": tuple(scale), "translate": tuple(translate)}
