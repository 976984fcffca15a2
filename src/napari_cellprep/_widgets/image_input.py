"""A napari layer's pixels and geometry (no Qt); how they meet a model is ``engine.layout``'s rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..engine.devices import available_devices


def layer_array(data, multiscale: bool = False) -> np.ndarray:
    """The full-resolution pixels of an Image/Labels layer's data (dask/zarr read into memory)."""
    return np.asarray(data[0] if multiscale else data)


def layer_choices(viewer, kind: type) -> Callable[..., list[tuple[str, object]]]:
    """A magicgui ``choices`` callable: the viewer's layers of ``kind`` by name."""

    def choices(_widget=None) -> list[tuple[str, object]]:
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]

    return choices


def device_choices() -> list[str]:
    """The device dropdown: ``auto`` (CUDA, then MPS, then CPU) and every device found."""
    return ["auto", *available_devices()]


def output_geometry(
    scale: Sequence[float], translate: Sequence[float], channel_axis: int | None, rgb: bool
) -> dict[str, tuple[float, ...]]:
    """``scale``/``translate`` for output layers (the input's, without a non-RGB channel axis)."""
    scale, translate = list(scale), list(translate)
    if channel_axis is not None and not rgb:
        del scale[channel_axis], translate[channel_axis]
    return {"scale": tuple(scale), "translate": tuple(translate)}
