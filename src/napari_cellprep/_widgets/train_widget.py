"""The Train dock: train or fine-tune a model on labels painted in napari, in a background thread,
with a live loss/mIoU plot, a Stop button, an optional live preview, and saving."""

from __future__ import annotations

import re
import time
from enum import Enum
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
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image, Labels
from qtpy.QtWidgets import QFileDialog, QMessageBox

from ..engine.checkpoint import SUFFIX, ModelInfo, save_checkpoint
from ..engine.errors import CellprepError, SettingsError
from ..engine.events import EpochEnd, NormAdapted, StepEnd
from ..engine.images.labels import CORRECTION_WEIGHT, LabelKind, check_classes, label_mapping, to_targets
from ..engine.images.layout import find_channel_axis, input_channels
from ..engine.threads import gui_torch_threads, warm_up_optimizer
from ..engine.training.live import PreviewReady, training_job
from ..engine.training.loop import TrainingResult
from ..engine.training.plan import (
    DEFAULT_VAL_FRACTION,
    TrainConfig,
    default_val_fraction,
    normalization_for,
    training_settings,
)
from ..engine.training.recipe import LabeledInput, prepare_run
from ..engine.training.two_speed import ClassifierFitted, EnsembleChosen, two_speed_job
from ..model import ModelConfig
from .image_input import device_choices, layer_array, layer_choices
from .layers import kept_prediction
from .live_classifier import LiveClassifier
from .loss_plot import LossPlot, score_name
from .registry import ModelEntry, ModelRegistry, get_registry
from .run_controls import RunControls
from .training_preview import TrainingPreview

STEP_DISPLAY_INTERVAL_S = 0.25
"""Progress and status show a step at most this often (every step still reaches the plot's data)."""


def fine_tuned_name(base: str, image: str) -> str:
    """``base fine-tuned on image``; a further round on the same image keeps the name (the
    registry numbers it) instead of growing it."""
    suffix = f" fine-tuned on {image}"
    stem = re.sub(r" \(\d+\)$", "", base)
    return stem if stem.endswith(suffix) else base + suffix


class Start(Enum):
    """What training starts from."""

    FINE_TUNE = "fine-tune a model"
    NEW = "new model"


class Validation(Enum):
    """What the validation mIoU is measured on."""

    FRACTION = "fraction of the painted pixels"
    PAIR = "another image/labels pair"
    NONE = "none"


def _enum_choices(kind: type[Enum]) -> list[tuple[str, Enum]]:
    return [(member.value, member) for member in kind]


def kept(event: EpochEnd) -> str:
    """What the dock keeps and shows after an epoch that did not improve on it."""
    if event.best_epoch is None or event.best_miou is None:
        return ""
    which = "the starting model" if event.best_epoch == 0 else f"epoch {event.best_epoch}"
    return f" (kept: {which}, {event.best_miou:.3f})"


class TrainWidget(Container):
    """Paint labels (value 1 = first class, 2 = second, ...), then Train; Stop ends cleanly."""

    def __init__(self, viewer: napari.viewer.Viewer, registry: ModelRegistry | None = None) -> None:
        super().__init__()
        self._viewer = viewer
        self._registry = registry or get_registry()
        self.trained: ModelEntry | None = None
        self.kept = ""  # what the last run keeps: classifier, network or their ensemble
        self.preview = TrainingPreview(viewer)
        defaults = TrainConfig()

        self._image = ComboBox(label="image", choices=layer_choices(viewer, Image))
        self._labels = ComboBox(label="painted labels", choices=layer_choices(viewer, Labels))
        self._start = RadioButtons(label="start from", choices=_enum_choices(Start), orientation="horizontal")
        self._base = ComboBox(label="model", choices=self._registry.choices, nullable=True)
        self._classes = SpinBox(label="classes", min=2, max=255, value=2)
        self._names = LineEdit(label="class names", value="background, foreground")
        self._channel_axis = ComboBox(label="channel axis", choices=self._channel_axes)
        self._width = SpinBox(label="network width", min=2, max=256, value=ModelConfig.width)
        self._depth = SpinBox(label="network depth", min=1, max=6, value=ModelConfig.depth)
        self.mapping = Label(label="painted values")
        self._epochs = SpinBox(label="epochs", min=1, max=100_000, value=defaults.epochs)
        self._lr = FloatSpinBox(
            label="learning rate", min=1e-6, max=1.0, step=1e-4, value=defaults.learning_rate
        )
        self._lr.native.setDecimals(6)
        self._batch = SpinBox(label="batch size", min=1, max=512, value=defaults.batch_size)
        self._patch = SpinBox(label="patch size", min=16, max=4096, step=16, value=defaults.patch_size)
        self._steps = SpinBox(label="steps per epoch", min=0, max=1_000_000, value=0)
        self._steps.native.setSpecialValueText("auto")
        self._device = ComboBox(label="device", choices=device_choices(), value=defaults.device)
        self._validation = ComboBox(
            label="validation", choices=_enum_choices(Validation), value=Validation.FRACTION
        )
        self._fraction = FloatSpinBox(
            label="held-out fraction", min=0.05, max=0.5, step=0.05, value=DEFAULT_VAL_FRACTION
        )
        self._val_image = ComboBox(label="validation image", choices=layer_choices(viewer, Image))
        self._val_labels = ComboBox(label="validation labels", choices=layer_choices(viewer, Labels))
        self._preview = CheckBox(text="live preview (best epoch so far, on the current view)", value=True)
        self._live = CheckBox(text="live: a pixel classifier answers after every stroke", value=False)
        self._live.tooltip = ("Refits a pixel classifier on multiscale features to your strokes after every stroke "
                              "and shows it in the preview; Train then teaches the network past it from the "
                              "classifier's confident pixels, and keeps whichever fits held-out strokes best")
        self.live = LiveClassifier(self.preview, self.native)
        self._save_button = PushButton(text="Save model…", enabled=False)
        self.controls = RunControls("Train", "Stop", abort=False, extra_buttons=(self._save_button,))
        self.plot = LossPlot()
        self.extend(
            [
                self._image,
                self._labels,
                self._start,
                self._base,
                self._classes,
                self._names,
                self._channel_axis,
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
                self._live,
                self.controls,
            ]
        )
        self.native.layout().addWidget(self.plot)

        self._start.value = Start.FINE_TUNE if self._registry.entries else Start.NEW
        if self._registry.entries:
            self._base.value = self._registry.entries[0]
        self._take_base_classes()
        self._applied_start: Start | None = None
        self._take_start_defaults()
        self._start.changed.connect(self._take_start_defaults)
        self._registry.follow(self, self._base.reset_choices)
        self._base.changed.connect(self._take_base_classes)
        self._image.changed.connect(self._channel_axis.reset_choices)
        for widget in (self._start, self._base, self._classes, self._names, self._validation):
            widget.changed.connect(self._update_form)
        self._watched: Labels | None = None  # the Labels layer whose painting re-checks the form
        for widget in (self._image, self._labels, self._start, self._base, self._classes, self._names,
                       self._channel_axis, self._validation, self._val_image, self._val_labels, self._patch):
            widget.changed.connect(self.validate)
        self._epochs.changed.connect(self.plot.set_epochs)
        self.plot.set_epochs(self._epochs.value)
        warm_up_optimizer()
        self.controls.run_button.changed.connect(self.train)
        self.controls.when_idle(self._on_idle)
        self._save_button.changed.connect(lambda: self.save_model())
        self._update_form()
        self.validate()

    # -- form ----------------------------------------------------------------------------------
    def _channel_axes(self, _widget=None) -> list[tuple[str, int | None]]:
        """``none`` (grayscale, or the colours of an RGB layer), or an axis before Y, X."""
        layer = self._image.value
        if layer is None or layer.rgb:
            return [("none (grayscale or RGB)", None)]
        shape = layer.data.shape
        return [("none (grayscale or RGB)", None)] + [
            (f"axis {axis} ({size} channels)", axis) for axis, size in enumerate(shape[:-2])
        ]

    def _take_base_classes(self, *_args) -> None:
        """Fine-tuning starts with the base model's classes (their count and names may change);
        the model is read from its file now, in the background, not when Train is pressed."""
        entry = self._base.value
        if entry is not None:
            self._registry.preload(entry)
            self._classes.value = entry.info.config.num_classes
            self._names.value = ", ".join(entry.info.class_names)

    def _take_start_defaults(self, *_args) -> None:
        """Fine-tuning and training afresh start from their own settings (``engine.plan``), once
        per change of mode: the radio buttons re-emit their value whenever napari resets the
        dock's choices (a layer added or removed), and the user's settings must survive that."""
        if self._start.value is self._applied_start:
            return
        self._applied_start = self._start.value
        fine_tune = self._start.value is Start.FINE_TUNE
        settings = training_settings(fine_tune)
        self._lr.value, self._patch.value = settings.learning_rate, settings.patch_size
        self._batch.value = settings.batch_size
        self._steps.value = settings.steps_per_epoch or 0
        self._validation.value = Validation.FRACTION if default_val_fraction(fine_tune) else Validation.NONE

    def class_names(self) -> list[str]:
        """The classes the trained model will have: the names given, then ``class k``."""
        names = [name.strip() for name in self._names.value.split(",") if name.strip()]
        return names + [f"class {k}" for k in range(len(names), self._classes.value)]

    def _update_form(self, *_args) -> None:
        new = self._start.value is Start.NEW
        self._base.visible = not new
        for widget in (self._width, self._depth, self._channel_axis):
            widget.visible = new
        self._fraction.visible = self._validation.value is Validation.FRACTION
        self._val_image.visible = self._val_labels.visible = self._validation.value is Validation.PAIR
        self.mapping.value = label_mapping(self.class_names())

    # -- checking as the user types ---------------------------------------------------------------
    def problems(self) -> list[tuple[object, str]]:
        """What keeps Train from working now: (field, reason) pairs, from the form and the layers'
        shapes and painted values (cheap checks; the rest is checked when Train is pressed)."""
        image, labels = self._image.value, self._labels.value
        if image is None:
            return [(self._image, "Choose the Image layer you painted on (open an image first).")]
        if labels is None:
            return [(self._labels, "Add a Labels layer over the image (Layers ▸ New Labels Layer) and paint a "
                                   "few strokes of each class.")]
        given = [name.strip() for name in self._names.value.split(",") if name.strip()]
        if len(given) > self._classes.value:
            return [(self._names, f"{len(given)} class names given for {self._classes.value} classes: raise "
                                  f"'classes' or remove names.")]
        fine_tune = self._start.value is Start.FINE_TUNE
        if fine_tune and self._base.value is None:
            return [(self._base, "Choose a model to fine-tune, or start from a new model.")]
        problems = self._layer_problems(image, labels, self._channel_axis.value if not fine_tune else None)
        if self._validation.value is Validation.PAIR:
            if self._val_image.value is None or self._val_labels.value is None:
                problems.append((self._val_image if self._val_image.value is None else self._val_labels,
                                 "Choose a validation image and its painted Labels layer, or another validation."))
            else:
                problems += self._layer_problems(self._val_image.value, self._val_labels.value, None)
        return problems

    def _layer_problems(self, image: Image, labels: Labels, axis: int | None) -> list[tuple[object, str]]:
        """Whether ``labels`` cover ``image`` (without its channels) and hold strokes of known classes."""
        fine_tune = self._start.value is Start.FINE_TUNE
        try:
            if fine_tune:
                channels = self._base.value.info.config.in_channels
            else:
                channels = input_channels(image.data.shape, rgb=image.rgb, channel_axis=axis)
            axis = find_channel_axis(image.data.shape, channels, rgb=image.rgb, channel_axis=axis)
        except CellprepError as exc:
            return [(self._base if fine_tune else self._channel_axis, f"{image.name!r}: {exc}")]
        covered = tuple(size for k, size in enumerate(image.data.shape) if k != axis)
        if tuple(labels.data.shape) != covered:
            return [(self._labels, f"{labels.name!r} has shape {tuple(labels.data.shape)} but {image.name!r} "
                                   f"has {covered} without its channels: paint on a Labels layer made over it.")]
        if not isinstance(labels.data, np.ndarray):
            return []  # a lazy (dask, zarr) layer is read when Train is pressed, not on every change
        try:  # the engine's own rules and messages, as Train applies them
            targets = to_targets(labels.data, LabelKind.PAINTED, covered, image.name)
            check_classes([(image.name, targets, LabelKind.PAINTED)], self._classes.value)
        except CellprepError as exc:
            return [(self._labels, f"{exc} ({label_mapping(self.class_names())})")]
        if min(covered[-2:]) < self._patch.value:
            return [(self._patch, f"{image.name!r} is {covered[-2]}×{covered[-1]} pixels, smaller than the patch "
                                  f"size {self._patch.value}: choose a patch size of at most {min(covered[-2:])}")]
        return []

    def validate(self, *_args) -> bool:
        """Mark what cannot work and disable Train with the reason shown; follow painting on the
        chosen Labels layer. Returns whether Train can start."""
        labels = self._labels.value
        if labels is not self._watched:
            if self._watched is not None:
                self._watched.events.paint.disconnect(self.validate)
                self._watched.events.data.disconnect(self.validate)
            if labels is not None:
                labels.events.paint.connect(self.validate)
                labels.events.data.connect(self.validate)
            self._watched = labels
        ready = self.controls.check(self.problems())
        if ready and self._live.value and not self.controls.running:
            self.live.refit(self._image.value, self._labels.value, self._live_info())
        return ready

    def _live_info(self) -> ModelInfo:
        """What the live classifier needs of the model: classes, input channels, normalisation."""
        names = self.class_names()
        base = self._base.value if self._start.value is Start.FINE_TUNE else None
        image = self._image.value
        channels = base.info.config.in_channels if base is not None else input_channels(
            image.data.shape, rgb=image.rgb, channel_axis=self._channel_axis.value)
        config = ModelConfig(num_classes=self._classes.value, in_channels=channels, width=4, depth=1)
        normalization = base.info.normalization if base is not None else normalization_for(None)
        return ModelInfo(config, names[: self._classes.value], normalization)

    # -- preparing (main thread, before any thread starts) ---------------------------------------
    def _input(self, image_layer: Image, labels_layer: Labels) -> LabeledInput:
        """An Image layer and the Labels layer painted over it; a segmentation's corrections weigh more."""
        labels = layer_array(labels_layer.data, labels_layer.multiscale)
        return LabeledInput(
            layer_array(image_layer.data, image_layer.multiscale),
            labels,
            image_layer.name,
            image_layer.rgb,
            kept_prediction(labels_layer.metadata, labels.shape),
        )

    def _prepare(self) -> dict:
        """Everything ``two_speed_job`` needs (``engine.training.recipe.prepare_run`` on the form's
        values); raises with a clear message on bad input."""
        image_layer, labels_layer = self._image.value, self._labels.value
        if image_layer is None or labels_layer is None:
            raise SettingsError(
                "choose an Image layer and a Labels layer painted over it (Layers ▸ New Labels Layer)"
            )
        init, channel_axis, architecture = None, None, None
        if self._start.value is Start.FINE_TUNE:
            entry = self._base.value
            if entry is None:
                raise SettingsError("choose a model to fine-tune, or start from a new model")
            init = self._registry.load(entry)
            name = fine_tuned_name(init.label, image_layer.name)
        else:
            channel_axis = self._channel_axis.value
            architecture = {"width": self._width.value, "depth": self._depth.value}
            name = f"new model on {image_layer.name}"
        validation = self._fraction.value if self._validation.value is Validation.FRACTION else 0.0
        if self._validation.value is Validation.PAIR:
            val_image, val_labels = self._val_image.value, self._val_labels.value
            if val_image is None or val_labels is None:
                raise SettingsError(
                    "choose a validation Image layer and its painted Labels layer, or another validation"
                )
            validation = [self._input(val_image, val_labels)]
        plan = prepare_run(
            [self._input(image_layer, labels_layer)],
            kind=LabelKind.PAINTED,
            init=init,
            channel_axis=channel_axis,
            num_classes=self._classes.value,
            class_names=self.class_names(),
            architecture=architecture,
            settings={  # the engine's defaults for what the form does not show (adapt_norm)
                "epochs": self._epochs.value,
                "batch_size": self._batch.value,
                "learning_rate": self._lr.value,
                "patch_size": self._patch.value,
                "steps_per_epoch": self._steps.value or None,
                "device": self._device.value,
            },
            validation=validation,
            name=name,
        )
        job = {"plan": plan, "threads": gui_torch_threads()}
        if self._preview.value:
            job.update(self.preview.prepare(image_layer, plan.info, channel_axis))
        return job

    # -- running -------------------------------------------------------------------------------
    def train(self) -> None:
        """Check the inputs, then train in a background thread."""
        if self.controls.running:
            return
        problems = self.problems()
        if problems:
            self.controls.fail(problems[0][1])
            return
        try:
            job = self._prepare()
        except CellprepError as exc:
            self.controls.fail(str(exc))
            return
        self._last_step_shown = 0.0
        self.kept = ""
        self.plot.clear()
        self._save_button.enabled = False
        plan = job["plan"]
        corrected = sum(int((item.weight > 1).sum()) for item in plan.train if item.weight is not None)
        corrections = f" ({corrected} corrected, weighted ×{CORRECTION_WEIGHT:g})" if corrected else ""
        verb = "Continuing" if plan.continuing else "Training"
        self.controls.start(  # live: the two speeds (an option until benchmarks/loop/two_speeds.py backs it)
            two_speed_job if self._live.value else training_job,
            busy=f"{verb} {plan.info.name!r} on {plan.labeled_pixels[0]} painted pixels{corrections}…",
            on_event=self._on_event,
            on_result=self._on_result,
            stop=self.controls.stop_event,
            **job,
        )

    def stop(self) -> None:
        """End training after the current step; the best model so far is kept."""
        self.controls.stop("Stopping after the current step…")

    def _on_event(self, event) -> None:
        if isinstance(event, PreviewReady):
            self.preview.show(event)
            return
        if isinstance(event, ClassifierFitted):
            held = "" if event.held_out is None else f", {event.held_out:.3f} on the held-out strokes"
            self.controls.status.value = f"Pixel classifier fitted in {event.seconds:.1f} s{held}; training the network…"
            return
        if isinstance(event, EnsembleChosen):
            self.kept = f"{event.which} (classifier weight {event.weight:.2f}, {event.held_out[event.weight]:.3f})"
            return
        if isinstance(event, NormAdapted):
            self.controls.status.value = "Adapted the model to this image; training…"
            return
        self.plot.add(event)
        stopping = self.controls.stop_event.is_set()
        if isinstance(event, StepEnd):
            now = time.monotonic()
            if now - self._last_step_shown < STEP_DISPLAY_INTERVAL_S:
                return  # very fast steps: the dock shows a few per second
            self._last_step_shown = now
            steps = event.epochs * event.steps_per_epoch
            self.controls.show_progress((event.epoch - 1) * event.steps_per_epoch + event.step, steps)
            if not stopping:
                self.controls.status.value = (
                    f"epoch {event.epoch}/{event.epochs}, step {event.step}/{event.steps_per_epoch}: "
                    f"loss {event.loss:.3f}"
                )
        elif isinstance(event, EpochEnd):
            progress = self.controls.progress
            self.controls.show_progress(event.epoch * (progress.max // event.epochs), progress.max)
            if event.val_miou is not None and not stopping:
                self.controls.status.value = (
                    f"epoch {event.epoch}/{event.epochs}: loss {event.train_loss:.3f}, "
                    f"{score_name(event)} {event.val_miou:.3f}" + ("" if event.improved else kept(event))
                )

    def _on_result(self, result: TrainingResult) -> None:
        self.trained = self._registry.add_trained(result.model)
        # the loop: correct its result, Train again, and it continues from this model
        self._start.value = Start.FINE_TUNE  # after a new model, the form takes the fine-tuning settings
        self._base.value = self.trained
        ending = "Stopped" if result.stopped else "Finished"
        best = ""
        if result.best_miou is not None and result.history:  # not stopped before an epoch ended
            name = score_name(result.history[-1])
            best = f", best {name} {result.best_miou:.3f} at epoch {result.best_epoch}"
        kept = f"; it keeps the {self.kept}" if self.kept else ""
        self.controls.status.value = (
            f"{ending} after {result.epochs_run} epochs{best}{kept}. {self.trained.label!r} is now in the Segment "
            f"widget's model list (save it to keep it); Train again continues from it."
        )

    def _on_idle(self) -> None:
        self._save_button.enabled = self.trained is not None

    # -- saving --------------------------------------------------------------------------------
    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the last trained model (asks for a file if ``path`` is None; asks before overwriting)."""
        entry = self.trained
        if entry is None:
            self.controls.fail("train a model first")
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
                self.controls.status.value = f"Not saved: {path.name} was kept."
                return None
        try:
            save_checkpoint(
                path, entry.loaded.model, entry.loaded.info, overwrite=True, classifier=entry.loaded.classifier
            )
        except CellprepError as exc:
            self.controls.fail(str(exc))
            return None
        self._registry.mark_saved(entry, path)
        self.controls.status.value = f"Saved {entry.label!r} to {path}."
        return path
