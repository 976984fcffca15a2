"""The Segment dock's controls for big images: "current view only" and the output store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, Container, FileEdit

from ..engine.events import Progress
from ..engine.images.planes import LazyPlanes
from .big_image import (
    default_store,
    full_resolution,
    is_big,
    pyramid_steps,
    store_layers,
    view_crop,
    zarr_segment_job,
)
from .image_input import output_geometry


class BigImageRun:
    """Decides how the dock runs on a layer: the visible region in memory ("current view only"),
    a lazy or multiscale layer out of core into a zarr store, or anything else as before."""

    def __init__(self, dock: Any) -> None:
        self._dock = dock
        self.view_only = CheckBox(text="current view only", value=False)
        self.view_only.tooltip = "Segment only the part of the current plane in view: a quick look at a big image"
        self.store = FileEdit(label="output store", mode="w", filter="*.zarr")
        self.store.line_edit.native.setPlaceholderText("store for big images (empty: temporary)")
        self.store.tooltip = (
            "Where big (dask, zarr or multiscale) images are segmented to, block by block; "
            "empty: a new temporary store"
        )
        self.layers: list[Any] = []
        self._precision = ""
        self.row = Container(widgets=[self.view_only, self.store], layout="horizontal", labels=False)

    def prepare(self, layer: Any, entry: Any, options: dict[str, Any]) -> dict[str, Any] | None:
        """The dock's job options for ``layer`` (the view's crop with "current view only"), or
        ``None`` when a big layer's out-of-core job has been started here instead."""
        if self.view_only.value:
            crop, translate = view_crop(self._dock._viewer, layer)
            return options | {"data": crop, "multiscale": False, "translate": translate}
        if not is_big(layer):
            return options
        self._start(layer, entry, options)
        return None

    def _chosen_store(self, source: str) -> Path:
        value = str(self.store.value or "")
        return Path(value) if value not in ("", ".") else default_store(source)

    def _start(self, layer: Any, entry: Any, options: dict[str, Any]) -> None:
        dock, data = self._dock, full_resolution(layer)
        store = self._chosen_store(layer.name)
        planes = LazyPlanes(data, entry.info.config.in_channels, rgb=layer.rgb)
        geometry = output_geometry(options["scale"], options["translate"], planes.axis, layer.rgb)
        shape = planes.lead + planes.shape[2:]
        made = store_layers(
            store, layer.name, entry.info, shape, options["show"], pyramid_steps(layer), geometry, options["precision"]
        )
        self.layers = dock._replace_layers(layer, made)
        self._precision = options["precision"]
        dock.controls.start(
            zarr_segment_job,
            busy=f"Segmenting {layer.name!r} block by block into {store}…",
            on_event=self._on_progress,
            on_result=self._on_done,
            on_aborted=self._on_aborted,
            registry=options["registry"],
            entry=entry,
            data=data,
            store=store,
            source=layer.name,
            rgb=layer.rgb,
            tile=options["tile"],
            device=options["device"],
            precision=options["precision"],
            show=options["show"],
            threads=options["threads"],
            inputs=[layer.source.path] if getattr(layer.source, "path", None) else [],
        )

    def _refresh(self) -> None:
        for layer in self.layers:
            if layer in self._dock._viewer.layers:
                layer.refresh()

    def _on_progress(self, event: Progress) -> None:
        self._dock._on_progress(event)
        self._refresh()

    def _on_aborted(self) -> None:
        self._dock.controls.status.value = "Cancelled: the blocks written so far stay in the store."

    def _on_done(self, store: Path) -> None:
        self._refresh()
        self._dock.show_precision(self._precision)
        self._dock.controls.status.value = f"Done: written block by block to {store} in {self._precision}."
        self._dock._apply_layout()
