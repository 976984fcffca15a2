"""The Train dock's live preview: a Labels layer (painted values, like every layer we make) over
the current view, refreshed with the best epoch's segmentation while training runs."""

from __future__ import annotations

import napari
import numpy as np
from napari.layers import Image, Labels

from ..engine.checkpoint import ModelInfo
from ..engine.images.labels import labels_dtype, to_painted
from ..engine.images.layout import model_input
from ..engine.training.live import PreviewReady, preview_window
from .image_input import layer_array
from .layers import MARKER, class_colormap, layer_prefix


class TrainingPreview:
    """The preview layer of one Train dock (made when training starts, updated per improvement)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.layer: Labels | None = None
        self.epoch: int | None = None
        self.num_classes = 2

    def prepare(self, layer: Image, info: ModelInfo, channel_axis: int | None) -> dict:
        """The current plane around the view centre, as the model takes it (``training_job``'s
        ``preview`` options); the (empty) preview layer is made now, so that updates during
        training only replace its data."""
        array, axis = model_input(
            layer_array(layer.data, layer.multiscale),
            info.config.in_channels,
            rgb=layer.rgb,
            channel_axis=channel_axis,
        )
        point, scale, translate = list(self._view_centre(layer)), list(layer.scale), list(layer.translate)
        if axis is not None:
            if not layer.rgb:  # the channel axis is a layer axis too
                del point[axis], scale[axis], translate[axis]
            array, axis = np.moveaxis(array, axis, -1), -1
        lead = len(point) - 2
        plane = tuple(
            int(np.clip(round(c), 0, n - 1)) for c, n in zip(point[:lead], array.shape[:lead], strict=True)
        )
        rows, cols = preview_window(array.shape[lead : lead + 2], point[-2:])
        self.num_classes = info.config.num_classes
        offset = np.array([*plane, rows.start, cols.start], dtype=float)
        self._make_layer(
            layer.name,
            shape=(1,) * lead + (rows.stop - rows.start, cols.stop - cols.start),
            dtype=labels_dtype(info.config.num_classes),
            colormap=class_colormap(info.class_colors),
            scale=tuple(scale),
            translate=tuple(np.asarray(translate) + offset * np.asarray(scale)),
        )
        return dict(preview=np.ascontiguousarray(array[plane][rows, cols]), preview_channel_axis=axis)

    @property
    def shown(self) -> bool:
        """Whether the preview layer exists and is still in the viewer."""
        return self.layer is not None and self.layer in self._viewer.layers

    def show(self, event: PreviewReady) -> None:
        """Show a preview (if the user has not removed the layer meanwhile).

        The pixels are written into the layer's own array, then redrawn: assigning ``data`` makes
        napari rebuild the layer's colormap shader as well (about 55 against 45 ms of GUI-thread
        work per preview of 256² in a small test under xvfb; docs/results/performance.md).
        """
        if self.layer in self._viewer.layers:
            self.layer.data[...] = to_painted(event.labels, self.num_classes).reshape(self.layer.data.shape)
            self.layer.refresh()
            self.epoch = event.epoch

    def _make_layer(self, source: str, shape: tuple[int, ...], dtype: np.dtype, **style) -> None:
        """Make the preview Labels layer over ``source``, or reset the one a previous run made.

        Reusing it matters for the event loop: adding (or removing) a layer costs napari
        100–200 ms of vispy and Qt work on the GUI thread, replacing its data a few tens.
        """
        name = layer_prefix(source) + "training preview"
        old = [layer for layer in self._viewer.layers if layer.name == name and MARKER in layer.metadata]
        for layer in old[1:]:
            self._viewer.layers.remove(layer)
        empty = np.zeros(shape, dtype)
        if old and old[0].ndim == len(shape):
            self.layer = old[0]
            for key, value in style.items():
                setattr(self.layer, key, value)
            self.layer.data = empty
            return
        if old:
            self._viewer.layers.remove(old[0])
        marker = {MARKER: {"source": source, "output": "preview"}}
        active = self._viewer.layers.selection.active
        self.layer = self._viewer.add_labels(empty, name=name, metadata=marker, **style)
        if active is not None:
            self._viewer.layers.selection.active = active  # painting goes on where the user was

    def _view_centre(self, layer: Image) -> np.ndarray:
        """The centre of the current view (on the current plane) in the layer's data coordinates."""
        world = np.asarray(self._viewer.dims.point, dtype=float)
        displayed = list(self._viewer.dims.displayed)
        world[displayed] = np.asarray(self._viewer.camera.center)[-len(displayed) :]
        return np.asarray(layer.world_to_data(world[-layer.ndim :]))
