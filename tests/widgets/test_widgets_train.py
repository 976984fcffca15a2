"""The Train dock in a real napari viewer (under Xvfb): training, Stop, plot, registry, saving,
preview, and the messages for bad input."""

import gc
import math

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cellprep._widgets import run_controls  # noqa: E402
from napari_cellprep._widgets import train_widget as train_module  # noqa: E402
from napari_cellprep._widgets.layers import MARKER  # noqa: E402
from napari_cellprep.engine.checkpoint import load_checkpoint  # noqa: E402
from napari_cellprep.engine.training.plan import CONTINUE_DEFAULTS, FINE_TUNE_DEFAULTS  # noqa: E402

pytestmark = pytest.mark.napari

PLUGIN = "napari-cellprep"


def painted(mask: np.ndarray, every: int = 3) -> np.ndarray:
    """Sparse scribbles: every ``every``-th row painted with value class + 1."""
    labels = np.zeros(mask.shape, np.uint8)
    labels[::every] = mask[::every] + 1
    return labels


def small_settings(widget, epochs=1000, steps=2):
    widget._start.value = train_module.Start.NEW
    widget._width.value, widget._depth.value = 4, 2
    widget._names.value = "background, colony"
    widget._epochs.value, widget._steps.value = epochs, steps
    widget._batch.value, widget._patch.value = 2, 32
    widget._lr.value = 0.01


def test_train_stop_register_save(make_napari_viewer, qtbot, registry, cells, monkeypatch, tmp_path):
    viewer = make_napari_viewer()
    image = cells()
    viewer.add_image(image, name="cells")
    viewer.add_labels(painted((image > 2000).astype(np.uint8)), name="scribbles")
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    small_settings(widget)
    assert widget.mapping.value == "label 1 = background, label 2 = colony"
    widget._validation.value = train_module.Validation.FRACTION
    widget._preview.value = True

    widget.train()
    assert widget.controls.worker is not None and not widget.controls.run_button.enabled and widget.controls.stop_button.enabled
    assert gc.get_freeze_count() > 0  # full collections skip the viewer's objects while training
    qtbot.waitUntil(lambda: len(widget.plot.epochs) >= 2, timeout=60_000)
    assert widget.controls.progress.value >= 4 and widget.controls.progress.max == 1000 * 2
    widget.stop()
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=30_000)
    assert gc.get_freeze_count() == 0

    plot = widget.plot
    assert plot.epochs[:2] == [1, 2] and len(plot.epoch_loss) == len(plot.val_miou) == len(plot.epochs)
    assert all(math.isfinite(v) and v > 0 for v in plot.epoch_loss)
    assert all(0.0 <= v <= 1.0 for v in plot.val_miou)
    assert len(plot.step_loss) >= 2 * len(plot.epochs) and plot.steps[1] == 1.0
    assert widget.controls.status.value.startswith("Stopped after")
    assert not widget.controls.stop_button.enabled and widget._save_button.enabled
    # Train again fine-tunes the new model, whose 128² patches do not fit this 96² image: said before the press
    assert "smaller than the patch size 128" in widget.controls.problem and not widget.controls.run_button.enabled
    widget._patch.value = 32
    assert widget.controls.run_button.enabled

    # the model is registered at once and selectable in the Segment widget
    label = widget.trained.label
    assert label == "new model on cells" and segment.model_labels == [label]
    assert widget.trained.loaded.model.training is False

    # the live preview shows the best epoch so far over the image
    preview = viewer.layers["cells | training preview"]
    assert preview.data.shape == (96, 96) and preview.metadata[MARKER]["output"] == "preview"
    assert set(np.unique(preview.data)) <= {1, 2} and widget.preview.epoch >= 1  # class + 1, as every layer
    assert viewer.layers.selection.active.name == "scribbles"  # painting stays on the user's layer

    # saving: new file written; an existing file is replaced only after the user says yes
    target = tmp_path / "mine.cellprep"
    assert widget.save_model(target) == target
    saved = load_checkpoint(target)
    assert saved.info.class_names == ["background", "colony"] and registry.entries[-1].path == target
    weights = {k: v.clone() for k, v in saved.model.state_dict().items()}
    target.write_bytes(b"precious")
    answers = []

    def answer(choice):
        def question(*args, **kwargs):
            answers.append(args[2])
            return choice

        return question

    monkeypatch.setattr(
        train_module.QMessageBox, "question", answer(train_module.QMessageBox.StandardButton.No)
    )
    assert widget.save_model(target) is None
    assert target.read_bytes() == b"precious" and "already exists" in answers[-1]
    monkeypatch.setattr(
        train_module.QMessageBox, "question", answer(train_module.QMessageBox.StandardButton.Yes)
    )
    assert widget.save_model(target) == target
    reloaded = load_checkpoint(target).model.state_dict()
    assert all(np.array_equal(reloaded[k].numpy(), weights[k].numpy()) for k in weights)

    # training again reuses the preview layer (adding a layer costs napari 100-200 ms on the GUI thread)
    small_settings(widget)
    widget.train()  # empties the preview layer, then starts the worker
    redraws = []
    preview.events.set_data.connect(redraws.append)
    qtbot.waitUntil(lambda: preview.data.any(), timeout=60_000)
    widget.stop()
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=30_000)
    assert [layer.name for layer in viewer.layers].count("cells | training preview") == 1
    assert viewer.layers["cells | training preview"] is preview and set(np.unique(preview.data)) <= {1, 2}
    assert redraws  # each preview is written into the layer's array, then redrawn


def test_fine_tune_on_a_stack_then_segment_with_it(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, cells
):
    viewer = make_napari_viewer()
    stack = cells((3, 64, 64))
    viewer.add_image(stack, name="cells")
    labels = np.zeros(stack.shape, np.uint8)
    labels[1] = painted((stack[1] > 2000).astype(np.uint8), every=2)  # only plane 1 is painted
    viewer.add_labels(labels, name="scribbles")
    other = cells((64, 64), seed=4)
    viewer.add_image(other, name="other cells")
    viewer.add_labels((other > 2000).astype(np.uint8) + 1, name="other labels")  # fully painted
    registry.add_file(tiny_checkpoint)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    assert widget._start.value == train_module.Start.FINE_TUNE  # a model exists: fine-tuning is offered first
    widget._base.value = registry.entries[0]
    qtbot.waitUntil(lambda: registry.entries[0].loaded is not None, timeout=10_000)  # read in the background
    assert not widget._names.native.isHidden() and widget._names.value == "background, colony"  # base names
    widget._names.value = "background, nucleus"  # renamed for this image
    widget._epochs.value, widget._steps.value, widget._batch.value, widget._patch.value = 2, 2, 2, 32
    widget._image.value, widget._labels.value = viewer.layers["cells"], viewer.layers["scribbles"]
    widget._validation.value = train_module.Validation.PAIR
    widget._val_image.value, widget._val_labels.value = (
        viewer.layers["other cells"],
        viewer.layers["other labels"],
    )
    widget.train()
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=60_000)
    assert widget.controls.status.value.startswith("Finished after 2 epochs"), widget.controls.status.value
    assert widget.plot.epochs == [1, 2] and all(0 <= v <= 1 for v in widget.plot.val_miou)
    assert widget.plot.score_label == "validation mIoU"
    trained = widget.trained
    assert trained.label == "tiny fine-tuned on cells" and trained.info.training["fine_tuned_from"] == "tiny"
    assert trained.info.class_names == ["background", "nucleus"]
    assert trained.info.training["average_weights"] == 0 and not trained.info.training["select_on_strokes"]

    # the loop: Train again continues from the model just trained, by the engine's continuing rule
    assert widget._start.value == train_module.Start.FINE_TUNE and widget._base.value is trained
    assert widget.controls.status.value.endswith("Train again continues from it."), widget.controls.status.value
    widget._validation.value = train_module.Validation.NONE
    widget.train()
    assert widget.controls.status.value.startswith("Continuing 'tiny fine-tuned on cells' on ")
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=60_000)
    again = widget.trained
    assert again.label == "tiny fine-tuned on cells (2)"  # numbered, not "… fine-tuned on cells fine-tuned on cells"
    assert again.info.training["fine_tuned_from"] == "tiny fine-tuned on cells"
    assert again.info.training["average_weights"] == CONTINUE_DEFAULTS["average_weights"] > 0
    assert again.info.training["select_on_strokes"] is FINE_TUNE_DEFAULTS["select_on_strokes"] is True  # every round
    assert widget.plot.score_label == "mIoU on the painted labels"  # no validation data: the strokes
    assert ", best mIoU on the painted labels " in widget.controls.status.value
    # the same model taken to another image starts as a first round does
    widget._image.value, widget._labels.value = viewer.layers["other cells"], viewer.layers["other labels"]
    widget.train()
    assert widget.controls.status.value.startswith("Training 'tiny fine-tuned on cells fine-tuned on other cells'")
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=60_000)
    assert widget.trained.info.training["average_weights"] == 0 and widget.trained.info.training["select_on_strokes"]

    segment.select_model(trained)
    segment.run()
    qtbot.waitUntil(lambda: segment.controls.worker is None, timeout=30_000)
    assert segment.output_layers()[-2].data.shape == (3, 64, 64)  # the ensemble


def test_the_users_settings_survive_layers_added_and_removed(make_napari_viewer, registry, tiny_checkpoint, cells):
    viewer = make_napari_viewer()
    registry.add_file(tiny_checkpoint)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    widget._patch.value, widget._lr.value, widget._steps.value = 48, 0.02, 3
    viewer.add_image(cells(), name="cells")  # napari resets the dock's choices: the radio buttons re-emit
    viewer.layers.remove("cells")
    assert (widget._patch.value, widget._lr.value, widget._steps.value) == (48, 0.02, 3)
    widget._start.value = train_module.Start.NEW  # a change of mode still takes that mode's settings
    assert widget._patch.value == train_module.training_settings(False).patch_size != 48


def test_bad_inputs_give_clear_messages_before_any_thread(make_napari_viewer, registry, cells, monkeypatch):
    """Each problem marks its field and disables Train as the user types, with the engine's own
    message; pressing Train anyway starts nothing and says the same."""
    errors = []
    monkeypatch.setattr(run_controls, "show_error", errors.append)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    controls = widget.controls
    assert "Choose the Image layer" in controls.problem and widget._image.native.styleSheet()
    image = viewer.add_image(cells(), name="cells")
    widget.reset_choices()
    assert "Add a Labels layer" in controls.problem and widget._labels.native.styleSheet()
    labels = viewer.add_labels(np.zeros((96, 96), np.uint8), name="scribbles")
    widget.reset_choices()
    small_settings(widget)
    widget._validation.value = train_module.Validation.NONE
    mask = (image.data > 2000).astype(np.uint8)

    def attempt(data=None, patch=32):
        if data is not None:
            labels.data = data
        widget._patch.value = patch
        assert controls.problem and not controls.run_button.enabled  # shown before the press
        shown = controls.problem
        widget.train()
        assert controls.worker is None  # nothing started
        assert controls.status.value == f"Error: {errors[-1]}" and errors[-1] == shown
        return errors[-1]

    assert "there are no labeled pixels" in attempt() and "label 1 = background, label 2 = colony" in errors[-1]
    assert "has shape (64, 64) but 'cells' has (96, 96)" in attempt(np.ones((64, 64), np.uint8))
    three = painted(mask)
    three[5, 5] = 3
    assert "painted value 3 is not a class" in attempt(three)
    assert "class 1 (painted value 2)" in attempt(np.where(mask == 0, 1, 0).astype(np.uint8)[:, :] * 1)
    assert "smaller than the patch size 128" in attempt(painted(mask), patch=128)
    assert widget._patch.native.styleSheet() and not widget._labels.native.styleSheet()
    widget._names.value = "background, colony, debris"
    assert "3 class names given for 2 classes" in attempt(painted(mask))
    assert len(errors) == 6
    widget._names.value = "background, colony"
    labels.data = np.zeros((96, 96), np.uint8)
    assert "no labeled pixels" in controls.problem
    labels.paint((10, 10), 1)  # painting a stroke re-checks the form
    labels.paint((40, 40), 2)
    assert "no labeled pixels" not in controls.problem


def test_an_epoch_that_did_not_improve_says_which_model_is_kept():
    from napari_cellprep._widgets.loss_plot import score_name
    from napari_cellprep._widgets.train_widget import kept
    from napari_cellprep.engine.events import EpochEnd

    event = EpochEnd(epoch=3, epochs=5, train_loss=0.5, losses={}, elapsed=1.0, val_miou=0.8, best_miou=0.9,
                     best_epoch=0, improved=False, scored_on="painted")
    assert kept(event) == " (kept: the starting model, 0.900)"
    assert score_name(event) == "mIoU on the painted labels"
    later = EpochEnd(3, 5, 0.5, {}, 1.0, val_miou=0.8, best_miou=0.85, best_epoch=2)
    assert kept(later) == " (kept: epoch 2, 0.850)" and score_name(later) == "validation mIoU"


def test_live_the_pixel_classifier_answers_after_the_strokes(make_napari_viewer, qtbot, registry, cells):
    """With "live" on, each stroke refits the pixel classifier in a worker and repaints the preview."""
    pytest.importorskip("sklearn")
    viewer = make_napari_viewer()
    image = viewer.add_image(cells(), name="cells")
    mask = (image.data > 2000).astype(np.uint8)
    labels = viewer.add_labels(np.zeros(mask.shape, np.uint8), name="scribbles")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    small_settings(widget)
    assert not widget._live.value  # an option until the loop benchmark backs it as the default
    widget._live.value = True
    assert widget.live.worker is None  # nothing painted: nothing to fit
    labels.data = np.where(np.arange(96)[:, None] % 8 == 0, mask + 1, 0).astype(np.uint8)
    qtbot.waitUntil(lambda: widget.live.seconds is not None and widget.live.worker is None, timeout=60_000)
    shown = widget.preview.layer
    assert shown is not None and shown.name == "cells | training preview"
    assert ((shown.data.reshape(mask.shape) - 1) == mask).mean() > 0.9  # the disks, from strokes alone
    first, fitted = widget.live.fit, widget.live.fit.classifier
    labels.paint((50, 50), 1)  # another stroke: a refit on the same features
    qtbot.waitUntil(lambda: widget.live.worker is None and widget.live.fit.classifier is not fitted, timeout=60_000)
    assert widget.live.fit is first  # the view's features are computed once
