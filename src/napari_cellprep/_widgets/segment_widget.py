"""The Segment dock: run a model on an Image layer in a background thread and show every output."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from napari.layers import Image, Labels, Layer
from qtpy.QtWidgets import QFileDialog

from ..engine.devices import PRECISIONS, precision_note, resolve_device, resolve_precision
from ..engine.errors import CellprepError, ImageLayoutError
from ..engine.events import Progress
from ..engine.images.instances import AUTO, write_measurements
from ..engine.images.labels import annotated_pixels
from ..engine.images.layout import find_channel_axis
from ..engine.prediction.familiarity import Familiarity, training_summary
from ..engine.prediction.uncertainty import Region
from ..engine.threads import gui_job, gui_torch_threads
from .big_segment import BigImageRun
from .image_input import device_choices, layer_array, layer_choices
from .layers import MARKER, SHOWABLE, LayerData, is_output_of, kept_prediction, segment_layers
from .registry import ModelEntry, ModelRegistry, get_registry
from .run_controls import RunControls

NO_MODEL = "No model yet: open a .cellprep file or train one in the Train dock."
NO_IMAGE = "Choose an Image layer to segment (open an image or File ▸ Open Sample ▸ CellPrep)."
NO_BOUNDARY = "none"


def segment_job(
    registry: ModelRegistry, entry: ModelEntry, data, multiscale: bool, threads: int | None = None, **kwargs
) -> Generator[Progress, None, list[LayerData]]:
    """Load the model and the pixels, then ``segment_layers`` on ``threads`` torch threads (all of
    it in the worker thread)."""
    with gui_job(threads):
        loaded = registry.load(entry)
        image = layer_array(data, multiscale)
        return (yield from segment_layers(image, loaded, **kwargs))


def _adopt(event) -> None:
    """A user painted on one of our Labels layers: it is theirs now, never replaced by a re-run."""
    event.source.metadata.pop(MARKER, None)


class SegmentWidget(Container):
    """Choose an image, a model, a device and outputs; Run shows them side by side."""

    def __init__(self, viewer: napari.viewer.Viewer, registry: ModelRegistry | None = None) -> None:
        super().__init__(scrollable=True)  # a crowded dock scrolls; nothing in it is squeezed
        self._viewer = viewer
        self._registry = registry or get_registry()
        self._input: Layer | None = None
        self._ensemble: Layer | None = None  # the last run's, also once the user has painted on it
        self._cue: Layer | None = None
        self._next_index = 0

        self._image = ComboBox(label="image", choices=layer_choices(viewer, Image))
        self._model = ComboBox(label="model", choices=self._registry.choices, nullable=True)
        self._open = FileEdit(label="open model", mode="r", filter="*.cellprep")
        self._device = ComboBox(label="device", choices=device_choices(), value="auto")
        self._precision = ComboBox(label="precision", choices=["auto", *PRECISIONS], value="auto")
        self._precision.tooltip = (
            "What the network computes in. auto: 16-bit where the device runs it natively and it met the "
            "accuracy bar (docs/results/performance/precision.md), else float32; bfloat16 / float16: "
            "autocast, faster where native, labels may differ from float32's on a few pixels"
        )
        self._tile = SpinBox(label="tile size", min=64, max=4096, step=32, value=256)
        self._show = {name: CheckBox(text=name, value=True) for name in SHOWABLE}
        self._grid = CheckBox(text="side by side (grid); untick for overlay", value=True)
        self._objects = CheckBox(text="objects", value=False)
        self._objects.tooltip = "Add a Labels layer of the objects, with a measurements table per object"
        self._min_size = SpinBox(label="min px", min=0, max=10_000_000, value=0)
        self._min_size.tooltip = "Objects smaller than this many pixels are dropped"
        self._boundary = ComboBox(label="boundary", choices=[AUTO, NO_BOUNDARY], value=AUTO)
        self._boundary.tooltip = (
            "The class between objects (they are split by a watershed); auto: a class named like "
            "boundary or membrane"
        )
        self._save_table = PushButton(text="Save measurements…", enabled=False)
        self._object_options = Container(widgets=[self._min_size, self._boundary], layout="horizontal")
        self._object_options.visible = False  # shown while "objects" is ticked
        self._objects.changed.connect(lambda on: setattr(self._object_options, "visible", on))
        self.controls = RunControls("Run", "Cancel", abort=True)
        self._next = PushButton(text="Next uncertain region ›", enabled=False)
        self._next.tooltip = "Show the next region where the branches disagree most: paint there next"
        self._region_row = Container(
            widgets=[self._next, self._save_table], layout="horizontal", labels=False
        )
        self._view_row = Container(widgets=[self._grid, self._objects], layout="horizontal", labels=False)
        self._big = BigImageRun(self)  # "current view only", and dask/zarr/multiscale layers out of core
        for row in (self._view_row, self._big.row, self._object_options, self._region_row):
            row.margins = (0, 0, 0, 0)  # no taller than one button: the dock's height is scarce
        self.trained_on = Label(label="model", value="—")
        self.trained_on.tooltip = "What the chosen model was trained on (from its checkpoint)"
        self.trained_on.native.setWordWrap(True)  # a long data description wraps, not widens the dock
        self.device_used = Label(label="device used", value="—")
        self.precision_used = Label(label="precision used", value="—")
        self.weights = Label(label="ensemble weights", value="—")
        outputs = Container(
            widgets=list(self._show.values()), layout="horizontal", labels=False, label="outputs"
        )
        self.extend(
            [
                self._image,
                self._model,
                self.trained_on,
                self._open,
                self._device,
                self._precision,
                self._tile,
                outputs,
                self._view_row,
                self._big.row,
                self._object_options,
                self.controls,
                self._region_row,
                self.device_used,
                self.precision_used,
                self.weights,
            ]
        )

        self._registry.follow(self, self._refresh_models)
        self._open.changed.connect(self._open_file)
        self.controls.run_button.changed.connect(self.run)
        self._grid.changed.connect(self._apply_layout)
        self._next.changed.connect(self.next_region)
        self._save_table.changed.connect(lambda: self.save_measurements())
        self._model.changed.connect(self._update_hint)
        for field in (self._image, self._model):
            field.changed.connect(self.validate)
        self._refresh_models()
        self.validate()

    # -- choices -------------------------------------------------------------------------------
    @property
    def model_labels(self) -> list[str]:
        """The names listed in the model dropdown."""
        return [label for label, _ in self._registry.choices()]

    def _refresh_models(self) -> None:
        """Follow the registry; with nothing chosen yet, choose the newest model (the bundled one
        when napari starts)."""
        self._model.reset_choices()
        if self._model.value is None and self._registry.entries:
            self._model.value = self._registry.entries[-1]
        self._update_hint()

    def select_model(self, entry: ModelEntry) -> None:
        """Choose ``entry`` in the model dropdown (e.g. a file dropped on the viewer)."""
        self._model.reset_choices()
        self._model.value = entry

    def _open_file(self, path) -> None:
        if path is None or not path.is_file():
            return
        try:
            entry = self._registry.add_file(path)
        except CellprepError as exc:
            self.controls.fail(str(exc))
            return
        self.select_model(entry)

    def _update_hint(self, *_args) -> None:
        entry = self._model.value
        classes = list(entry.info.class_names) if entry is not None else []
        if self._boundary.choices[2:] != tuple(classes):
            chosen = self._boundary.value
            self._boundary.choices = [AUTO, NO_BOUNDARY, *classes]
            self._boundary.value = chosen if chosen in self._boundary.choices else AUTO
        self.trained_on.value = (
            "—"
            if entry is None
            else training_summary(entry.info.name, entry.info.class_names, entry.info.training)
        )

    # -- running -------------------------------------------------------------------------------
    def problems(self) -> list[tuple[object, str]]:
        """What keeps Run from working now: (field, reason) pairs, checked as the user chooses."""
        layer, entry = self._image.value, self._model.value
        if layer is None:
            return [(self._image, NO_IMAGE)]
        if entry is None:
            return [(self._model, NO_MODEL)]
        try:
            find_channel_axis(layer.data.shape, entry.info.config.in_channels, rgb=layer.rgb)
        except ImageLayoutError as exc:
            return [(self._model, f"{layer.name!r} does not fit {entry.label}: {exc}")]
        return []

    def validate(self, *_args) -> bool:
        """Mark what cannot work and disable Run with the reason shown; whether Run can start."""
        return self.controls.check(self.problems())

    def run(self) -> None:
        """Start segmenting the chosen image in a background thread."""
        problems = self.problems()
        if problems:
            self.controls.fail(problems[0][1])
            return
        if self.controls.running:
            return
        layer, entry = self._image.value, self._model.value
        try:
            precision = resolve_precision(self._precision.value, resolve_device(self._device.value))
        except CellprepError as exc:
            self.controls.fail(str(exc))
            return
        self._input = layer
        options = dict(
            registry=self._registry,
            entry=entry,
            data=layer.data,
            multiscale=layer.multiscale,
            threads=gui_torch_threads(),
            source=layer.name,
            rgb=layer.rgb,
            show=[name for name, box in self._show.items() if box.value],
            tile=self._tile.value,
            device=self._device.value,
            precision=precision,
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
            instances=self._objects.value,
            min_size=self._min_size.value,
            boundary_class=None if self._boundary.value == NO_BOUNDARY else self._boundary.value,
            annotated=self.annotations(),
        )
        options = self._big.prepare(layer, entry, options)
        if options is None:  # a big layer: its out-of-core job has started
            return
        self.controls.start(
            segment_job,
            busy=f"Segmenting {layer.name!r} with {entry.label}…",
            on_event=self._on_progress,
            on_result=self._on_done,
            on_aborted=self._on_aborted,
            **options,
        )

    def annotations(self) -> list[np.ndarray]:
        """What the user has labeled so far, for the "paint here next" cue: the painted pixels of
        each in-memory Labels layer that is not one of our untouched outputs (on a corrected
        segmentation, only the corrections)."""
        masks = []
        for layer in self._viewer.layers:
            ours = MARKER in layer.metadata
            if not isinstance(layer, Labels) or ours or not isinstance(layer.data, np.ndarray):
                continue
            masks.append(annotated_pixels(layer.data, kept_prediction(layer.metadata, layer.data.shape)))
        return masks

    def cancel(self) -> None:
        """Stop after the current tile batch; no layer is added."""
        self.controls.stop("Cancelling…")

    def _on_progress(self, event: Progress) -> None:
        self.controls.show_progress(event.done, event.total)
        if event.message:
            self.controls.status.value = event.message

    def _on_aborted(self) -> None:
        self.controls.status.value = "Cancelled: no layers were added."

    def _on_done(self, layers: list[LayerData]) -> None:
        source = self._input
        added = self._replace_layers(source, layers)
        marker = next(
            layer.metadata[MARKER] for layer in added if layer.metadata[MARKER]["output"] == "ensemble"
        )
        self.device_used.value = marker["device"]
        self.show_precision(marker["precision"])
        weights = [
            f"w{i + 1} = {w:+.3f}  {name}"
            for i, (name, w) in enumerate(zip(marker["output_names"], marker["ensemble_weights"], strict=True))
        ]
        if marker.get("classifier_weight") is not None:
            weights.append(f"pixel classifier: {marker['classifier_weight']:.2f} of the final ensemble")
        self.weights.value = "\n".join(weights)
        done = f"Done: {len(added)} layers from {source.name!r} on {marker['device']} in {marker['precision']}."
        warning = (
            Familiarity(**marker["familiarity"]).message(self._model.value.label) if self._model.value else ""
        )
        self.controls.status.value = f"{warning}\n{done}" if warning else done
        outputs = {layer.metadata[MARKER]["output"]: layer for layer in added}
        self._ensemble, self._cue, self._next_index = outputs["ensemble"], outputs.get("cue"), 0
        self._next.enabled = self._cue is not None
        self._save_table.enabled = "objects" in outputs
        self._apply_layout()

    def show_precision(self, precision: str) -> None:
        """Show what the last run computed in, with a note when it was emulated (slow)."""
        note = precision_note(precision, resolve_device(self._device.value))
        self.precision_used.value = f"{precision} ({note})" if note else precision

    # -- layers --------------------------------------------------------------------------------
    def _replace_layers(self, source: Layer, layers: list[LayerData]) -> list[Layer]:
        """Remove our previous outputs for ``source`` and insert the new ones next to it, so the
        grid reads: input, filters, translated, branches, ensemble, disagreement."""
        viewer_layers = self._viewer.layers
        for old in [
            layer for layer in viewer_layers if is_output_of(layer.name, layer.metadata, source.name)
        ]:
            viewer_layers.remove(old)
        forward = self._viewer.canvas.grid.stride > 0
        anchor = viewer_layers.index(source) if source in viewer_layers else None
        added = []
        for i, (data, meta, layer_type) in enumerate(layers):
            layer = Layer.create(data, meta, layer_type)
            if layer_type == "labels":
                layer.events.paint.connect(_adopt)
            if anchor is None:
                viewer_layers.append(layer)
            else:
                viewer_layers.insert(anchor + 1 + i if forward else anchor, layer)
            added.append(layer)
        viewer_layers.selection.active = next(  # the layer to inspect, or correct by painting
            layer for layer in added if layer.metadata[MARKER]["output"] == "ensemble"
        )
        return added

    def output_layers(self) -> list[Layer]:
        """Our current output layers for the last segmented image."""
        if self._input is None:
            return []
        return [
            layer
            for layer in self._viewer.layers
            if is_output_of(layer.name, layer.metadata, self._input.name)
        ]

    def _apply_layout(self, *_args) -> None:
        """Grid: every output in its own cell, its name written in the cell (napari's per-layer
        name overlay, drawn once per grid cell). Overlay: the ensemble labels and the "paint here
        next" cue over the image, no names (they would overlap)."""
        grid = self._grid.value
        self._viewer.canvas.grid.enabled = grid
        for layer in self.output_layers():
            output = layer.metadata[MARKER]["output"]
            layer.visible = output != "cue" if grid else output in ("ensemble", "cue")
            layer.name_overlay.visible = grid and output != "cue"
        if self._input in self._viewer.layers:
            self._input.name_overlay.visible = grid
        self._viewer.reset_view()

    def next_region(self) -> Region | None:
        """Switch to overlay and centre the view on the next most uncertain region (cycling),
        with the ensemble layer active for painting; returns the region shown."""
        layers = self._viewer.layers
        if self._cue not in layers or self._ensemble not in layers:
            self.controls.fail("run the segmentation with 'disagreement' ticked first")
            return None
        found = self._cue.metadata[MARKER]["regions"]
        index = self._next_index % len(found)
        self._next_index = index + 1
        region = Region(**{**found[index], "plane": tuple(found[index]["plane"])})
        self._grid.value = False
        ensemble, viewer = self._ensemble, self._viewer
        centre = np.asarray(ensemble.data_to_world([*region.plane, *region.center]))
        offset = viewer.dims.ndim - len(centre)
        for axis, value in enumerate(centre[:-2]):
            viewer.dims.set_point(offset + axis, value)
        viewer.camera.center = tuple(centre[-2:])
        side = max(region.bottom - region.top, region.right - region.left) * float(
            np.max(np.abs(ensemble.scale[-2:]))
        )
        viewer.camera.zoom = 0.5 * min(viewer.canvas.size) / side
        self._cue.visible, ensemble.visible = True, True
        self._cue.selected_data = {index}
        layers.selection.active = ensemble
        self.controls.status.value = (
            f"Paint here next: region {index + 1} of {len(found)} (outlined, branch disagreement "
            f"{region.score:.2f}). Correct it with the brush, then Train on this layer."
        )
        return region

    def objects_layer(self) -> Layer | None:
        """The objects layer of the last run (``None`` without one)."""
        return next(
            (layer for layer in self.output_layers() if layer.metadata[MARKER]["output"] == "objects"), None
        )

    def save_measurements(self, path: str | Path | None = None) -> Path | None:
        """Save the objects layer's features table as CSV (asks for a file if ``path`` is None;
        asks before overwriting)."""
        layer = self.objects_layer()
        if layer is None:
            self.controls.fail("run with 'objects and measurements' ticked first")
            return None
        overwrite = path is None  # the file dialog itself asks before replacing a file
        if path is None:
            default = str(Path.home() / f"{self._input.name}_measurements.csv")
            path, _ = QFileDialog.getSaveFileName(
                self.native, "Save the measurements", default, "CSV (*.csv)"
            )
            if not path:
                return None
        table = {column: layer.features[column].to_numpy() for column in layer.features if column != "index"}
        try:
            path = write_measurements(path, table, overwrite=overwrite)
        except CellprepError as exc:
            self.controls.fail(str(exc))
            return None
        self.controls.status.value = f"Saved {len(layer.features)} objects' measurements to {path}"
        return path
