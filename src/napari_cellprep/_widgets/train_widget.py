"""The Train dock: train or fine-tune a model on labels painted in napari, in a background thread,
with a live loss/mIoU plot, a Stop button, an optional live preview, and saving."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFileDialog, QMessageBox

from ..engine.checkpoint import SUFFIX, ModelInfo, save_checkpoint
from ..engine.data import check_training_data, split_validation
from ..engine.devices import available_devices
from ..engine.errors import CellprepError, SettingsError
from ..engine.events import EpochEnd, StepEnd
from ..engine.training import TrainConfig, TrainingResult
from ..model import ModelConfig
from ..engine.labels import label_mapping
from ..engine.layout import input_channels, model_input
from .image_input import layer_array
from .layers import MARKER, class_colormap, layer_prefix
from .loss_plot import LossPlot
from .registry import ModelEntry, ModelRegistry, get_registry
from .threads import gui_torch_threads, warm_up_optimizer
from .train_job import PreviewReady, painted_items, preview_window, training_job

FINE_TUNE, SCRATCH = "fine-tune a model", "new model"
STEP_DISPLAY_INTERVAL_S = 0.25
"""Progress and status show a step at most this often (every step still reaches the plot's data)."""
VAL_FRACTION, VAL_PAIR, VAL_NONE = "fraction of the painted pixels", "another image/labels pair", "none"


class TrainWidget(Container):
    """Paint labels (value 1 = first class, 2 = second, ...), then Train; Stop ends cleanly."""

    def __init__(self, viewer: napari.viewer.Viewer, registry: ModelRegistry | None = None) -> None:
        super().__init__()
        self._viewer = viewer
        self._registry = registry or get_registry()
        self.worker = None
        self.trained: ModelEntry | None = None
        self.preview: Labels | None = None
        self.preview_epoch: int | None = None
        self._stop = threading.Event()

        self._image = ComboBox(label="image", choices=self._layer_choices(Image))
        self._labels = ComboBox(label="painted labels", choices=self._layer_choices(Labels))
        self._start = RadioButtons(label="start from", choices=[FINE_TUNE, SCRATCH], orientation="horizontal")
        self._base = ComboBox(label="model", choices=self._registry.choices, nullable=True)
        self._classes = SpinBox(label="classes", min=2, max=255, value=2)
        self._names = LineEdit(label="class names", value="background, foreground")
        self._width = SpinBox(label="network width", min=2, max=256, value=16)
        self._depth = SpinBox(label="network depth", min=1, max=6, value=4)
        self.mapping = Label(label="painted values")
        self._epochs = SpinBox(label="epochs", min=1, max=100_000, value=50)
        self._lr = FloatSpinBox(label="learning rate", min=1e-6, max=1.0, step=1e-4, value=1e-3)
        self._lr.native.setDecimals(6)
        self._batch = SpinBox(label="batch size", min=1, max=512, value=8)
        self._patch = SpinBox(label="patch size", min=16, max=4096, step=16, value=256)
        self._steps = SpinBox(label="steps per epoch", min=0, max=1_000_000, value=0)
        self._steps.native.setSpecialValueText("auto")
        self._device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self._validation = ComboBox(
            label="validation", choices=[VAL_FRACTION, VAL_PAIR, VAL_NONE], value=VAL_FRACTION
        )
        self._fraction = FloatSpinBox(label="held-out fraction", min=0.05, max=0.5, step=0.05, value=0.2)
        self._val_image = ComboBox(label="validation image", choices=self._layer_choices(Image))
        self._val_labels = ComboBox(label="validation labels", choices=self._layer_choices(Labels))
        self._preview = CheckBox(text="live preview (best epoch so far, on the current view)", value=False)
        self._train_button = PushButton(text="Train")
        self._stop_button = PushButton(text="Stop", enabled=False)
        self._save_button = PushButton(text="Save model…", enabled=False)
        self._progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # long messages wrap instead of resizing the dock
        self.plot = LossPlot()
        buttons = Container(
            widgets=[self._train_button, self._stop_button, self._save_button],
            layout="horizontal",
            labels=False,
        )
        self.extend(
            [
                self._image,
                self._labels,
                self._start,
                self._base,
                self._classes,
                self._names,
                self._width,
                self._depth,
                self.mapping,
                self._epochs,
                self._lr,
                self._batch,
                self._patch,
                self._steps,
                self._device,
                self._validation,
                self._fraction,
                self._val_image,
                self._val_labels,
                self._preview,
                buttons,
                self._progress,
                self.status,
            ]
        )
        self.native.layout().addWidget(self.plot)

        self._start.value = FINE_TUNE if self._registry.entries else SCRATCH
        if self._registry.entries:
            self._base.value = self._registry.entries[0]
        self._registry.changed.connect(self._base.reset_choices)
        for widget in (self._start, self._base, self._classes, self._names, self._validation):
            widget.changed.connect(self._update_form)
        self._epochs.changed.connect(self.plot.set_epochs)
        self.plot.set_epochs(self._epochs.value)
        warm_up_optimizer()
        stop = self._stop
        self.native.destroyed.connect(lambda *_: stop.set())  # napari closed mid-training: end the worker
        self._train_button.changed.connect(self.train)
        self._stop_button.changed.connect(self.stop)
        self._save_button.changed.connect(lambda: self.save_model())
        self._update_form()

    # -- form ----------------------------------------------------------------------------------
    def _layer_choices(self, kind: type):
        def choices(_widget=None):
            return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, kind)]

        return choices

    def _scratch_names(self) -> list[str]:
        names = [name.strip() for name in self._names.value.split(",") if name.strip()]
        return names + [f"class {k}" for k in range(len(names), self._classes.value)]

    def class_names(self) -> list[str]:
        """The classes the trained model will have (the base model's when fine-tuning)."""
        if self._start.value == FINE_TUNE and self._base.value is not None:
            return list(self._base.value.info.class_names)
        return self._scratch_names()

    def _update_form(self, *_args) -> None:
        scratch = self._start.value == SCRATCH
        self._base.visible = not scratch
        for widget in (self._classes, self._names, self._width, self._depth):
            widget.visible = scratch
        self._fraction.visible = self._validation.value == VAL_FRACTION
        self._val_image.visible = self._val_labels.visible = self._validation.value == VAL_PAIR
        self.mapping.value = label_mapping(self.class_names())

    def _fail(self, message: str) -> None:
        self.status.value = f"Error: {message}"
        show_error(message)

    # -- preparing (main thread, before any thread starts) ---------------------------------------
    def _model_info(self, image_layer: Image) -> tuple[ModelInfo, object]:
        """The description of the model to train, and the model to start from (or None)."""
        if self._start.value == FINE_TUNE:
            entry = self._base.value
            if entry is None:
                raise SettingsError("choose a model to fine-tune, or start from a new model")
            init = self._registry.load(entry)
            base = init.info
            name = f"{init.label} fine-tuned on {image_layer.name}"
            info = ModelInfo(
                base.config, list(base.class_names), base.normalization, list(base.class_colors), name=name
            )
            return info, init
        names = self._scratch_names()
        if len(names) != self._classes.value:
            raise SettingsError(
                f"{len(names)} class names given for {self._classes.value} classes; give one name per class"
            )
        in_channels = input_channels(image_layer.data.shape, rgb=image_layer.rgb)
        config = ModelConfig(
            num_classes=self._classes.value,
            in_channels=in_channels,
            width=self._width.value,
            depth=self._depth.value,
        )
        return ModelInfo(config, names, name=f"new model on {image_layer.name}"), None

    def _items(self, image_layer: Image, labels_layer: Labels, info: ModelInfo):
        return painted_items(
            layer_array(image_layer.data, image_layer.multiscale),
            layer_array(labels_layer.data, labels_layer.multiscale),
            rgb=image_layer.rgb,
            in_channels=info.config.in_channels,
            normalization=info.normalization,
            class_names=info.class_names,
            name=image_layer.name,
        )

    def _prepare(self) -> dict:
        """Everything ``training_job`` needs; raises with a clear message on bad input."""
        image_layer, labels_layer = self._image.value, self._labels.value
        if image_layer is None or labels_layer is None:
            raise SettingsError(
                "choose an Image layer and a Labels layer painted over it (Layers ▸ New Labels Layer)"
            )
        info, init = self._model_info(image_layer)
        config = TrainConfig(
            epochs=self._epochs.value,
            batch_size=self._batch.value,
            learning_rate=self._lr.value,
            patch_size=self._patch.value,
            steps_per_epoch=self._steps.value or None,
            device=self._device.value,
        )
        items = self._items(image_layer, labels_layer, info)
        check_training_data(items, info.config.num_classes, config.patch_size)
        val = None
        if self._validation.value == VAL_FRACTION:
            items, val = split_validation(items, self._fraction.value)  # keeps every class in training
        elif self._validation.value == VAL_PAIR:
            val_image, val_labels = self._val_image.value, self._val_labels.value
            if val_image is None or val_labels is None:
                raise SettingsError(
                    "choose a validation Image layer and its painted Labels layer, or another validation"
                )
            val = self._items(val_image, val_labels, info)
        job = dict(
            train=items,
            val=val,
            info=info,
            config=config,
            init=init,
            stop=self._stop,
            threads=gui_torch_threads(),
        )
        if self._preview.value:
            job.update(self._preview_input(image_layer, info))
        return job

    def _preview_input(self, layer: Image, info: ModelInfo) -> dict:
        """The current plane around the view centre, as the model takes it; the (empty) preview
        layer is made now, so that updates during training only replace its data."""
        array, axis = model_input(
            layer_array(layer.data, layer.multiscale), info.config.in_channels, rgb=layer.rgb
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
        offset = np.array([*plane, rows.start, cols.start], dtype=float)
        self._preview_layer(
            layer.name,
            shape=(1,) * lead + (rows.stop - rows.start, cols.stop - cols.start),
            dtype=np.uint8 if info.config.num_classes <= 255 else np.uint16,
            colormap=class_colormap(info.class_colors),
            scale=tuple(scale),
            translate=tuple(np.asarray(translate) + offset * np.asarray(scale)),
        )
        return dict(preview=np.ascontiguousarray(array[plane][rows, cols]), preview_channel_axis=axis)

    def _preview_layer(self, source: str, shape: tuple[int, ...], dtype: type, **style) -> None:
        """Make (or reset) the preview Labels layer over ``source``; the active layer stays."""
        name = layer_prefix(source) + "training preview"
        old = [layer for layer in self._viewer.layers if layer.name == name and MARKER in layer.metadata]
        for layer in old:
            self._viewer.layers.remove(layer)
        marker = {MARKER: {"source": source, "output": "preview"}}
        active = self._viewer.layers.selection.active
        self.preview = self._viewer.add_labels(np.zeros(shape, dtype), name=name, metadata=marker, **style)
        if active is not None:
            self._viewer.layers.selection.active = active  # painting goes on where the user was

    def _view_centre(self, layer: Image) -> np.ndarray:
        """The centre of the current view (on the current plane) in the layer's data coordinates."""
        world = np.asarray(self._viewer.dims.point, dtype=float)
        displayed = list(self._viewer.dims.displayed)
        world[displayed] = np.asarray(self._viewer.camera.center)[-len(displayed) :]
        return np.asarray(layer.world_to_data(world[-layer.ndim :]))

    # -- running -------------------------------------------------------------------------------
    def train(self) -> None:
        """Check the inputs, then train in a background thread."""
        if self.worker is not None:
            return
        try:
            job = self._prepare()
        except CellprepError as exc:
            self._fail(str(exc))
            return
        self._stop.clear()
        self._last_step_shown = 0.0
        self.plot.clear()
        self.worker = create_worker(training_job, _start_thread=False, **job)
        self.worker.yielded.connect(self._on_event)
        self.worker.returned.connect(self._on_result)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        pixels = sum(item.labeled_pixels for item in job["train"])
        self.status.value = f"Training {job['info'].name!r} on {pixels} painted pixels…"
        self.worker.start()

    def stop(self) -> None:
        """End training after the current step; the best model so far is kept."""
        self._stop.set()
        self._stop_button.enabled = False
        self.status.value = "Stopping after the current step…"

    def _set_running(self, running: bool) -> None:
        self._train_button.enabled = not running
        self._stop_button.enabled = running
        self._save_button.enabled = not running and self.trained is not None
        if running:
            self._progress.value = 0

    def _on_event(self, event) -> None:
        if isinstance(event, PreviewReady):
            self._show_preview(event)
            return
        self.plot.add(event)
        if isinstance(event, StepEnd):
            now = time.monotonic()
            if now - self._last_step_shown < STEP_DISPLAY_INTERVAL_S:
                return  # very fast steps: the dock shows a few per second
            self._last_step_shown = now
            self._progress.max = event.epochs * event.steps_per_epoch
            self._progress.value = (event.epoch - 1) * event.steps_per_epoch + event.step
            if not self._stop.is_set():
                self.status.value = (
                    f"epoch {event.epoch}/{event.epochs}, step {event.step}/{event.steps_per_epoch}: "
                    f"loss {event.loss:.3f}"
                )
        elif isinstance(event, EpochEnd):
            self._progress.value = event.epoch * (self._progress.max // event.epochs)
            if event.val_miou is not None and not self._stop.is_set():
                self.status.value = (
                    f"epoch {event.epoch}/{event.epochs}: loss {event.train_loss:.3f}, "
                    f"validation mIoU {event.val_miou:.3f}"
                )

    def _show_preview(self, event: PreviewReady) -> None:
        if self.preview in self._viewer.layers:
            self.preview.data = event.labels.reshape(self.preview.data.shape)
            self.preview_epoch = event.epoch

    def _on_result(self, result: TrainingResult) -> None:
        self.trained = self._registry.add_trained(result.model)
        ending = "Stopped" if result.stopped else "Finished"
        best = (
            ""
            if result.best_miou is None
            else f", best validation mIoU {result.best_miou:.3f} at epoch {result.best_epoch}"
        )
        self.status.value = (
            f"{ending} after {result.epochs_run} epochs{best}. {self.trained.label!r} is now in the Segment "
            f"widget's model list; save it to keep it."
        )

    def _on_error(self, exc: Exception) -> None:
        self._fail(str(exc))

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)

    # -- saving --------------------------------------------------------------------------------
    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the last trained model (asks for a file if ``path`` is None; asks before overwriting)."""
        entry = self.trained
        if entry is None:
            self._fail("train a model first")
            return None
        if path is None:
            default = str(Path.home() / f"{entry.label}{SUFFIX}".replace("/", "_"))
            path, _ = QFileDialog.getSaveFileName(
                self.native,
                "Save the trained model",
                default,
                f"CellPrep model (*{SUFFIX})",
                options=QFileDialog.Option.DontConfirmOverwrite,
            )
            if not path:
                return None
        path = Path(path)
        if path.suffix != SUFFIX:
            path = path.with_name(path.name + SUFFIX)
        if path.exists():
            answer = QMessageBox.question(
                self.native,
                "Overwrite?",
                f"{path} already exists. Replace it with the trained model?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                self.status.value = f"Not saved: {path.name} was kept."
                return None
        try:
            save_checkpoint(path, entry.loaded.model, entry.loaded.info, overwrite=True)
        except CellprepError as exc:
            self._fail(str(exc))
            return None
        self._registry.mark_saved(entry, path)
        self.status.value = f"Saved {entry.label!r} to {path}."
        return path
