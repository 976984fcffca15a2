"""The Segment dock in a real napari viewer (under Xvfb): manifest, runs, layers, grid, reader."""

import gc

import numpy as np
import pytest
import torch

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cellprep._widgets import run_controls
from napari_cellprep._widgets.layers import MARKER, PREDICTION, SHOWABLE
from napari_cellprep._widgets.segment_widget import SegmentWidget

pytestmark = pytest.mark.napari

PLUGIN = "napari-cellprep"
EXPECTED_2D = [
    "cells",
    "cells | filter 1",
    "cells | filter 2",
    "cells | translated t1",
    "cells | translated t2",
    "cells | branch 1: network 1",
    "cells | branch 2: network 2 on t1",
    "cells | branch 3: network 2 on t2",
    "cells | ensemble",
    "cells | branch disagreement",
    "cells | paint here next",
]


def open_segment(viewer, registry, checkpoint):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.select_model(registry.add_file(checkpoint))
    return widget


def run_and_wait(qtbot, widget):
    widget.run()
    assert widget.controls.worker is not None and not widget.controls.run_button.enabled
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=30_000)


def test_both_widgets_open_from_the_manifest(make_napari_viewer, registry):
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    assert type(segment).__name__ == "SegmentWidget" and type(train).__name__ == "TrainWidget"
    assert segment.model_labels == []  # nothing bundled in this registry: no crash, a hint instead
    assert "Choose an Image layer" in segment.controls.problem and not segment.controls.run_button.enabled


def test_segment_validates_as_the_user_chooses(make_napari_viewer, registry, tmp_path, cells):
    """Run is disabled, with the reason shown and the field marked, until the form can work."""
    from napari_cellprep.engine.checkpoint import ModelInfo, save_checkpoint
    from napari_cellprep.model import ModelConfig, build_model

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    controls = widget.controls
    assert "Choose an Image layer" in controls.problem and controls.blocked.value == controls.problem
    assert widget._image.native.styleSheet() and not controls.run_button.enabled
    viewer.add_image(cells(), name="cells")
    widget.reset_choices()
    assert "No model yet" in controls.problem and not controls.run_button.enabled
    assert widget._model.native.styleSheet() and not widget._image.native.styleSheet()
    config = ModelConfig(num_classes=2, in_channels=2, width=4, depth=2)
    two = save_checkpoint(tmp_path / "two.cellprep", build_model(config).eval(), ModelInfo(config, ["a", "b"]))
    widget.select_model(registry.add_file(two))
    assert "'cells' does not fit" in controls.problem and "expects 2 channels" in controls.problem
    assert not controls.run_button.enabled
    viewer.add_image(np.stack([cells(), cells(seed=1)]), name="two channels")
    widget._image.value = viewer.layers["two channels"]
    assert controls.problem == "" == controls.blocked.value and controls.run_button.enabled
    assert not widget._model.native.styleSheet()


def test_manifest_puts_both_widgets_in_the_layers_segment_menu():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    menu = manifest.contributions.menus["napari/layers/segment"]
    widget_commands = {w.command for w in manifest.contributions.widgets}
    assert (
        {item.command for item in menu}
        == widget_commands
        == {"napari-cellprep.segment", "napari-cellprep.train"}
    )
    assert [s.key for s in manifest.contributions.sample_data] == ["nist-phase"]
    assert manifest.contributions.readers[0].filename_patterns == ["*.cellprep"]


def test_segment_adds_expected_layers_in_reading_order(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, cells
):
    viewer = make_napari_viewer()
    viewer.add_image(cells(), name="cells", scale=(0.5, 0.5))
    user = viewer.add_labels(np.zeros((96, 96), np.uint8), name="my labels")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    run_and_wait(qtbot, widget)

    assert [layer.name for layer in viewer.layers] == EXPECTED_2D + ["my labels"]
    for layer in viewer.layers[1:-2]:
        assert layer.data.shape == (96, 96)
        assert tuple(layer.scale) == (0.5, 0.5)
        kind = layer.metadata[MARKER]["output"]
        expected = {"filter": np.float32, "translated": np.float32, "disagreement": np.float32}.get(
            kind, np.uint8
        )
        assert layer.data.dtype == expected, layer.name
    ensemble = viewer.layers["cells | ensemble"]
    assert isinstance(ensemble, napari.layers.Labels)
    assert list(ensemble.features["class"]) == ["background", "colony"]
    assert set(np.unique(ensemble.data)) <= {1, 2}  # painted values: class + 1, nothing unlabelled
    np.testing.assert_array_equal(ensemble.metadata[PREDICTION], ensemble.data)  # kept apart
    assert ensemble.metadata[PREDICTION] is not ensemble.data
    assert np.allclose(ensemble.colormap.map(np.array([0]))[0], 0)  # unlabelled: transparent
    assert np.allclose(ensemble.colormap.map(np.array([1]))[0], [0, 0, 0, 0.25])  # background: faint
    assert np.allclose(ensemble.colormap.map(np.array([2]))[0], [1.0, 0.843, 0.0, 1.0], atol=1e-3)  # #ffd700
    cue = viewer.layers["cells | paint here next"]
    assert isinstance(cue, napari.layers.Shapes) and not cue.visible  # shown over the ensemble in overlay
    regions = cue.metadata[MARKER]["regions"]
    assert len(cue.data) == len(regions) == 5 and list(cue.features["rank"]) == [1, 2, 3, 4, 5]
    assert [r["score"] for r in regions] == sorted((r["score"] for r in regions), reverse=True)
    assert viewer.layers["cells | filter 1"].colormap.name == "magma"
    assert viewer.layers["cells | translated t1"].colormap.name == "gray"
    assert viewer.canvas.grid.enabled and viewer.layers.selection.active is ensemble
    assert widget.device_used.value.startswith("cpu")
    weights = widget.weights.value.splitlines()
    assert len(weights) == 3 and weights[0].startswith("w1 = ") and weights[0].endswith("network 1")
    expected_w = registry.load(widget._model.value).model.ensemble_parameters()[0].detach().numpy()
    assert [float(line.split()[2]) for line in weights] == pytest.approx(expected_w, abs=1e-3)
    assert user.data.sum() == 0 and viewer.layers[-1] is user

    # overlay: the ensemble over the image, the other outputs hidden
    widget._grid.value = False
    assert not viewer.canvas.grid.enabled
    visible = [layer.name for layer in viewer.layers if layer.visible]
    assert visible == ["cells", "cells | ensemble", "cells | paint here next", "my labels"]
    assert not any(layer.name_overlay.visible for layer in widget.output_layers() + [viewer.layers["cells"]])


def test_rerun_replaces_own_layers_but_keeps_user_and_edited_ones(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, cells
):
    viewer = make_napari_viewer()
    viewer.add_image(cells(), name="cells")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    widget._show["translated"].value = False
    run_and_wait(qtbot, widget)
    first = set(map(id, viewer.layers))
    renamed = viewer.layers["cells | filter 1"]
    renamed.name = "my favourite filter"
    corrected = viewer.layers["cells | ensemble"]
    painted = 3 - int(corrected.data[10, 10])  # the other class than predicted
    corrected.paint((10, 10), painted)  # the user corrects our labels: the layer is theirs now
    assert MARKER not in corrected.metadata
    run_and_wait(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    # input + renamed filter + corrected ensemble + 8 fresh outputs (no translated images)
    assert len(viewer.layers) == 11 and names.count("cells | filter 1") == 1
    assert "my favourite filter" in names and renamed in viewer.layers and corrected in viewer.layers
    assert corrected.data[10, 10] == painted and len(widget.output_layers()) == 8
    assert corrected.metadata[PREDICTION][10, 10] == 3 - painted  # what was predicted stays known
    assert not (first & set(map(id, viewer.layers))) - {
        id(viewer.layers["cells"]),
        id(renamed),
        id(corrected),
    }


def test_an_rgb_layer_on_a_grayscale_model_is_segmented_as_its_mean(
    make_napari_viewer, qtbot, registry, trained_checkpoint
):
    from napari_cellprep.engine.checkpoint import load_checkpoint
    from napari_cellprep.engine.prediction.inference import predict
    from tests.conftest import rgb_disks

    image = rgb_disks(3)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="rgb", rgb=True)
    widget = open_segment(viewer, registry, trained_checkpoint)
    run_and_wait(qtbot, widget)
    ensemble = viewer.layers["rgb | ensemble"]
    expected = predict(load_checkpoint(trained_checkpoint), image.mean(axis=-1, dtype=np.float32))
    np.testing.assert_array_equal(ensemble.data, expected.labels + 1)  # layers hold class + 1
    assert 1 < ensemble.data.mean() < 2  # both classes found


def test_cancel_adds_no_layers(make_napari_viewer, qtbot, registry, tiny_checkpoint, cells):
    viewer = make_napari_viewer()
    viewer.add_image(cells((6, 96, 96)), name="cells")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    widget._tile.value = 64
    widget.run()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=30_000)
    assert [layer.name for layer in viewer.layers] == ["cells"]
    assert widget.controls.status.value == "Cancelled: no layers were added."
    assert widget.controls.run_button.enabled and not widget.controls.stop_button.enabled


def test_stack_gives_stacked_outputs(make_napari_viewer, qtbot, registry, tiny_checkpoint, cells):
    viewer = make_napari_viewer()
    viewer.add_image(cells((3, 64, 80)), name="cells")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    run_and_wait(qtbot, widget)
    outputs = widget.output_layers()[:-1]  # the cue outlines squares of the planes
    assert len(outputs) == 9
    assert all(layer.data.shape == (3, 64, 80) for layer in outputs)
    viewer.dims.set_current_step(0, 2)  # the slider moves through the planes of every output
    assert all(layer._slice_input.world_slice.point[0] == 2 for layer in outputs)
    cue = widget.output_layers()[-1]
    assert cue.ndim == 3 and all(shape.shape == (4, 3) for shape in cue.data)


def test_rgb_image_with_a_grayscale_model(make_napari_viewer, qtbot, registry, tiny_checkpoint, cells):
    viewer = make_napari_viewer()
    rgb = np.stack([cells(seed=s) // 256 for s in range(3)], axis=-1).astype(np.uint8)
    viewer.add_image(rgb, name="cells", rgb=True)
    widget = open_segment(viewer, registry, tiny_checkpoint)
    run_and_wait(qtbot, widget)
    outputs = widget.output_layers()[:-1]
    assert len(outputs) == 9 and all(layer.data.shape == (96, 96) for layer in outputs)


def test_segment_says_what_the_model_knows_and_warns_on_an_unfamiliar_image(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, cells, monkeypatch
):
    from napari_cellprep.engine.prediction import familiarity

    viewer = make_napari_viewer(show=True)
    viewer.add_image(cells(), name="cells")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    info = widget._model.value.info
    assert widget.trained_on.value.splitlines()[0] == f"{info.name}: classes {', '.join(info.class_names)}"

    monkeypatch.setattr(familiarity, "UNCERTAINTY_LIMIT", 1.0)  # nothing can be above these
    monkeypatch.setattr(familiarity, "DISAGREEMENT_LIMIT", 1.0)
    run_and_wait(qtbot, widget)
    measured = viewer.layers["cells | ensemble"].metadata[MARKER]["familiarity"]
    assert 0 <= measured["uncertainty"] <= 0.5 and 0 <= measured["disagreement"] <= 1
    assert widget.controls.status.value.startswith("Done:")

    monkeypatch.setattr(familiarity, "UNCERTAINTY_LIMIT", -1.0)  # everything is above it
    run_and_wait(qtbot, widget)
    status = widget.controls.status.value
    assert "looks unlike what 'tiny (tiny.cellprep)' was trained on" in status
    assert familiarity.NEXT_STEP in status and status.splitlines()[-1].startswith("Done:")
    from qtpy.QtWidgets import QApplication

    def shown_in_full(label) -> bool:
        QApplication.processEvents()
        return label.isVisible() and label.height() >= label.heightForWidth(label.width()) > 0

    # the long warning is shown in full, not clipped; the dock lays out its wrapped labels
    # lazily, later on a loaded machine
    qtbot.waitUntil(lambda: shown_in_full(widget.controls.status.native), timeout=5000)
    qtbot.waitUntil(lambda: shown_in_full(widget.trained_on.native), timeout=5000)


def test_reader_opens_a_checkpoint_in_the_segment_widget(
    make_napari_viewer, registry, tiny_checkpoint, tmp_path
):
    viewer = make_napari_viewer()
    layers = viewer.open(str(tiny_checkpoint), plugin=PLUGIN)
    assert layers == []
    assert "Segment (napari-cellprep)" in viewer.window._wrapped_dock_widgets
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")  # the one the reader opened
    assert isinstance(widget, SegmentWidget)
    assert widget._model.value.path == tiny_checkpoint
    assert widget.model_labels == ["tiny (tiny.cellprep)"]
    foreign = tmp_path / "foreign.cellprep"
    foreign.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
    from napari_cellprep._widgets._reader import get_reader

    assert get_reader(str(foreign)) is None and get_reader(str(tiny_checkpoint)) is not None


def test_grid_screenshot_shows_the_panels(
    make_napari_viewer, qtbot, registry, trained_checkpoint, cells, monkeypatch
):
    from qtpy.QtWidgets import QApplication

    from napari_cellprep.engine.prediction import familiarity

    # no unfamiliar-image warning: its long status text would resize the canvas between the shots
    monkeypatch.setattr(familiarity, "UNCERTAINTY_LIMIT", 1.0)
    monkeypatch.setattr(familiarity, "DISAGREEMENT_LIMIT", 1.0)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.add_image(cells(seed=7), name="cells")
    widget = open_segment(viewer, registry, trained_checkpoint)
    for name in ("translated", "branches"):
        widget._show[name].value = False
    run_and_wait(qtbot, widget)
    QApplication.processEvents()
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    # 5 panels in reading order: input, filter 1, filter 2 / ensemble, disagreement, (empty)
    assert viewer.canvas.grid.actual_shape(viewer.layers) == (2, 3)
    height, width = shot.shape[:2]
    cell = {
        (r, c): shot[r * height // 2 : (r + 1) * height // 2, c * width // 3 : (c + 1) * width // 3]
        for r in range(2)
        for c in range(3)
    }

    def share(pixels, condition):
        return float(condition(pixels[..., 0], pixels[..., 1], pixels[..., 2]).mean())

    lit = {key: share(px, lambda r, g, b: r + g + b > 60) for key, px in cell.items()}
    colourful = {
        key: share(
            px, lambda r, g, b: (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)) > 40
        )
        for key, px in cell.items()
    }
    gold = share(cell[1, 0], lambda r, g, b: (r > 120) & (g > 80) & (b < 60))
    assert lit[0, 0] > 0.1 and colourful[0, 0] < 0.01, "the input panel is a gray image"
    assert colourful[0, 1] > 0.02 and colourful[0, 2] > 0.02, "the filters are drawn in magma"
    assert 0.01 < gold < 0.2, "the ensemble shows the colonies in the class colour (#ffd700), not everywhere"
    assert lit[1, 1] > 0.1, "the disagreement map is drawn"
    assert lit[1, 2] < 0.005, "the sixth cell is empty"

    # each panel carries its name (napari's layer-name overlay, once per grid cell): hiding the
    # names changes the top of each occupied cell and nothing in the empty one
    assert all(layer.name_overlay.visible == layer.visible for layer in viewer.layers)  # cue: hidden
    for layer in viewer.layers:
        layer.name_overlay.visible = False
    QApplication.processEvents()
    bare = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    changed = np.abs(shot - bare).sum(axis=-1) > 60
    for r, c in cell:
        top = changed[r * height // 2 : r * height // 2 + height // 8, c * width // 3 : (c + 1) * width // 3]
        assert (top.mean() > 0.001) == ((r, c) != (1, 2)), f"name drawn in cell {(r, c)}"


def test_device_choices_and_a_foreign_model_file(make_napari_viewer, registry, tmp_path, monkeypatch):
    from napari_cellprep.engine.devices import available_devices

    errors = []
    monkeypatch.setattr(run_controls, "show_error", errors.append)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert list(widget._device.choices) == ["auto", *available_devices()]
    foreign = tmp_path / "weights.cellprep"
    foreign.write_bytes(b"\x80\x04pickled")
    widget._open.value = foreign
    assert (
        "is not a napari-cellprep checkpoint" in errors[-1]
        and widget.controls.status.value == f"Error: {errors[-1]}"
    )
    assert widget.model_labels == []


def test_the_precision_choice_runs_and_shows_what_was_used(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, cells, monkeypatch
):
    from napari_cellprep.engine import devices
    from napari_cellprep.engine.checkpoint import load_checkpoint
    from napari_cellprep.engine.prediction.inference import predict

    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset())
    image = cells()
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    assert widget._precision.value == "auto" and list(widget._precision.choices) == [
        "auto", "float32", "bfloat16", "float16"
    ]
    loaded = load_checkpoint(tiny_checkpoint)
    for choice, used in (("auto", "float32"), ("bfloat16", "bfloat16")):
        widget._precision.value = choice
        run_and_wait(qtbot, widget)
        ensemble = viewer.layers["cells | ensemble"]
        assert ensemble.metadata[MARKER]["precision"] == used and f" in {used}." in widget.controls.status.value
        assert widget.precision_used.value.split(" ")[0] == used
        emulated = used != "float32" and not devices.cpu_has_native_bfloat16()
        assert ("emulated" in widget.precision_used.value) == emulated
        expected = predict(loaded, image, tile=256, overlap=64, precision=used).labels + 1
        np.testing.assert_array_equal(ensemble.data, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_segment_on_the_gpu_says_so(make_napari_viewer, qtbot, registry, tiny_checkpoint, cells):
    viewer = make_napari_viewer()
    viewer.add_image(cells(), name="cells")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    widget._device.value = "cuda:0"
    run_and_wait(qtbot, widget)
    assert widget.device_used.value.startswith("cuda:0 (") and len(widget.output_layers()) == 9


def test_bundled_model_on_the_sample_tiles_matches_the_ground_truth(
    make_napari_viewer, qtbot, monkeypatch, data_root
):
    """End to end with the shipped assets: sample tiles, default model, Segment dock."""
    from napari_cellprep._widgets import registry as registry_module
    from napari_cellprep.engine.checkpoint import default_checkpoint_path
    from napari_cellprep.engine.images.io import read_mask
    from napari_cellprep.engine.images.metrics import confusion_matrix, scores

    if not default_checkpoint_path().is_file():
        pytest.skip("no bundled default model in this installation")
    monkeypatch.setattr(registry_module, "_registry", None)  # a registry as napari starts it
    viewer = make_napari_viewer()
    [layer] = viewer.open_sample(PLUGIN, "nist-phase")
    assert layer.data.shape == (3, 256, 256)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert widget._model.value.kind == "default"  # the bundled model is offered and chosen
    for name in SHOWABLE:
        widget._show[name].value = False
    run_and_wait(qtbot, widget)
    [ensemble] = widget.output_layers()
    assert ensemble.data.shape == (3, 256, 256)
    data = data_root / "nist-phase"
    masks = [
        data / "masks" / f"{name.removeprefix('nist_').removesuffix('.tif')}.png"
        for name in layer.metadata["files"]
    ]
    truth = np.stack([read_mask(mask) for mask in masks])
    miou = scores(confusion_matrix(ensemble.data - 1, truth, 2)).miou  # the layer holds class + 1
    assert miou > 0.85, miou  # README: mIoU 0.930 on the 20 held-out tiles, these three among them


def test_a_bug_in_a_job_is_reported_with_its_traceback(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, cells, monkeypatch
):
    """A CellprepError is a message for the user; anything else is a bug: napari's notification
    carries the exception and its traceback."""
    from napari.utils.notifications import notification_manager

    from napari_cellprep._widgets import segment_widget

    def broken(*args, **kwargs):
        yield from ()
        raise ZeroDivisionError("an internal bug")

    received = []
    monkeypatch.setattr(segment_widget, "segment_job", broken)
    monkeypatch.setattr(notification_manager, "receive_error", lambda *info: received.append(info))
    viewer = make_napari_viewer()
    viewer.add_image(cells(), name="cells")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    run_and_wait(qtbot, widget)
    assert widget.controls.status.value.startswith("Error (a bug, details in napari's notifications)")
    [(kind, exc, traceback)] = received
    assert kind is ZeroDivisionError and str(exc) == "an internal bug" and traceback is not None
    assert widget.controls.run_button.enabled and not viewer.layers[1:]
    assert gc.get_freeze_count() == 0  # the collector sees every object again after a failed job


@pytest.mark.parametrize("dock", ["Segment", "Train"])
def test_a_dock_whose_widgets_are_gone_stops_following_the_models(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, dock
):
    viewer = make_napari_viewer()
    _, closed = viewer.window.add_plugin_dock_widget(PLUGIN, dock)
    with qtbot.waitSignal(closed.native.destroyed, timeout=5_000):
        closed.native.deleteLater()  # as when its viewer is closed
    _, live = make_napari_viewer().window.add_plugin_dock_widget(PLUGIN, "Segment")
    entry = registry.add_file(tiny_checkpoint)  # a model trained or opened in a later viewer
    assert live.model_labels == [entry.label]


def test_a_model_with_a_pixel_classifier_shows_it_as_its_own_panel(make_napari_viewer, qtbot, registry, tmp_path, cells):
    pytest.importorskip("sklearn")
    from napari_cellprep.engine.checkpoint import load_checkpoint, save_checkpoint
    from napari_cellprep.engine.classifier.fast import fit_fast
    from napari_cellprep.engine.images.normalize import normalize_channels
    from tests.conftest import disks

    image, mask = disks(0)
    plain = load_checkpoint(save_checkpoint(
        tmp_path / "net.cellprep", *_tiny_model_and_info()))
    target = np.full(mask.shape, -1)
    target[::6] = mask[::6]
    fast = fit_fast([normalize_channels(image[None], plain.info.normalization)], [target], 2).with_weight(0.5)
    path = save_checkpoint(tmp_path / "both.cellprep", plain.model, plain.info, classifier=fast)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    widget = open_segment(viewer, registry, path)
    run_and_wait(qtbot, widget)
    panel = viewer.layers["cells | pixel classifier (weight 0.50)"]
    assert panel.metadata[MARKER]["output"] == "classifier"
    assert ((panel.data - 1) == mask).mean() > 0.9  # painted values: class k is k + 1
    assert "pixel classifier: 0.50 of the final ensemble" in widget.weights.value


def _tiny_model_and_info():
    from napari_cellprep.engine.checkpoint import ModelInfo
    from napari_cellprep.model import ModelConfig, build_model

    config = ModelConfig(num_classes=2, width=4, depth=2)
    torch.manual_seed(0)
    return build_model(config).eval(), ModelInfo(config, ["background", "colony"], name="tiny")
