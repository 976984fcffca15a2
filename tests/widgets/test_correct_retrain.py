"""Segment → correct → retrain in the docks (issue #9 §3): the ensemble layer is corrected with
painted values and trained on directly, corrections weigh more than accepted pixels, and the
"paint here next" button moves the view to the most uncertain regions."""

import numpy as np
import pytest

from tests.conftest import disks

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cellprep._widgets import train_widget  # noqa: E402
from napari_cellprep._widgets.layers import MARKER, PREDICTION  # noqa: E402
from napari_cellprep.engine.images.labels import CORRECTION_WEIGHT  # noqa: E402

pytestmark = pytest.mark.napari

PLUGIN = "napari-cellprep"
SQUARE = (slice(8, 28), slice(60, 84))


def debris_image() -> np.ndarray:
    """Bright disks (colonies) and a square of debris almost as bright, which a model trained
    on the disks calls colony."""
    image, _ = disks(9, (96, 96))
    image = image.astype(np.float64)
    image[SQUARE] = 2700 + np.random.default_rng(1).normal(0, 200, image[SQUARE].shape)
    return np.clip(image, 0, 65535).astype(np.uint16)


def segment(qtbot, widget):
    widget.run()
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=30_000)
    return widget._ensemble


def test_a_corrected_region_is_learned_and_the_rest_kept(
    make_napari_viewer, qtbot, registry, trained_checkpoint
):
    viewer = make_napari_viewer()
    viewer.add_image(debris_image(), name="cells")
    _, segment_dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, train_dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    segment_dock.select_model(registry.add_file(trained_checkpoint))
    ensemble = segment(qtbot, segment_dock)
    before = ensemble.data.copy()
    assert (before[SQUARE] == 2).mean() > 0.8  # the model gets the debris wrong: "colony"

    # the user paints the debris as background (painted value 1) on the ensemble layer itself
    rows, cols = np.mgrid[SQUARE]
    ensemble.data_setitem((rows.ravel(), cols.ravel()), 1)
    assert MARKER not in ensemble.metadata and PREDICTION in ensemble.metadata  # theirs now; prediction known

    # retrain on that layer: fine-tune the same model
    train_dock._image.value, train_dock._labels.value = viewer.layers["cells"], ensemble
    train_dock._start.value = train_widget.Start.FINE_TUNE
    train_dock._base.value = registry.entries[0]
    train_dock._epochs.value, train_dock._steps.value = 10, 8
    train_dock._batch.value, train_dock._patch.value, train_dock._lr.value = 8, 32, 3e-3
    train_dock._validation.value = train_widget.Validation.NONE
    train_dock.train()
    corrected = 20 * 24 - int((before[SQUARE] == 1).sum())
    assert f"({corrected} corrected, weighted ×{CORRECTION_WEIGHT:g})" in train_dock.controls.status.value
    qtbot.waitUntil(lambda: train_dock.controls.worker is None, timeout=120_000)
    assert train_dock.controls.status.value.startswith("Finished"), train_dock.controls.status.value

    segment_dock.select_model(train_dock.trained)
    after = segment(qtbot, segment_dock).data
    assert (after[SQUARE] == 1).mean() >= 0.9  # the corrected region is now predicted as painted
    elsewhere = np.ones(after.shape, bool)
    elsewhere[SQUARE] = False
    assert (after[elsewhere] != before[elsewhere]).mean() < 0.05  # the rest hardly changes


def test_paint_here_next_moves_the_view_to_the_most_uncertain_regions(
    make_napari_viewer, qtbot, registry, trained_checkpoint
):
    viewer = make_napari_viewer()
    viewer.add_image(debris_image(), name="cells", scale=(2.0, 2.0))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert not widget._next.enabled
    widget.select_model(registry.add_file(trained_checkpoint))
    ensemble = segment(qtbot, widget)
    assert widget._next.enabled and viewer.canvas.grid.enabled
    cue = viewer.layers["cells | paint here next"]
    disagreement = viewer.layers["cells | branch disagreement"].data
    shown = [widget.next_region() for _ in range(len(cue.data) + 1)]
    assert not viewer.canvas.grid.enabled and cue.visible and ensemble.visible
    assert viewer.layers.selection.active is ensemble  # ready to paint
    first = shown[0]
    assert first.score == pytest.approx(
        disagreement[first.top : first.bottom, first.left : first.right].mean()
    )
    assert first.score == max(r.score for r in shown)
    assert shown[-1] == first  # it cycles
    widget.next_region()
    centre = np.asarray(viewer.camera.center[-2:])
    assert np.allclose(centre, 2.0 * np.asarray(shown[1].center))  # world = 2 × data here
    assert cue.selected_data == {1}
    assert "Paint here next: region 2 of" in widget.controls.status.value


def test_the_cue_moves_away_from_what_the_user_has_painted(
    make_napari_viewer, qtbot, registry, trained_checkpoint
):
    viewer = make_napari_viewer()
    viewer.add_image(debris_image(), name="cells")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.select_model(registry.add_file(trained_checkpoint))
    segment(qtbot, widget)
    first = widget.next_region()
    strokes = viewer.add_labels(np.zeros(debris_image().shape, np.uint8), name="my strokes")
    strokes.data[first.top : first.bottom, first.left : first.right] = 1  # the user labels that square
    painted = strokes.data.copy()
    segment(qtbot, widget)  # the same model: the same disagreement, now with that square painted
    regions = viewer.layers["cells | paint here next"].metadata[MARKER]["regions"]
    assert all((r["top"], r["left"]) != (first.top, first.left) for r in regions)
    np.testing.assert_array_equal(strokes.data, painted)  # the user's layer is read, never changed
    assert [mask.sum() for mask in widget.annotations()] == [painted.astype(bool).sum()]
