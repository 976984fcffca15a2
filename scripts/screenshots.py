"""Documentation screenshots of the napari plugin, made from the current code: docs/images/
segment.png, train.png, loop.png and loop-steps.png.

Run under a virtual display with a true-colour screen (never QT_QPA_PLATFORM=offscreen):

    xvfb-run -a -s "-screen 0 1920x1200x24" python -m scripts.screenshots \\
        src/napari_cellprep/models/default.cellprep --image img_046307

``segment.png``: the Segment dock's outputs side by side (grid) on a real nist-phase tile.
``train.png``: a few brush strokes painted as a person paints them (the scribbles benchmark's
stroke simulator, ``benchmarks.harness.strokes``, each stroke inside one class of the tile's
ground truth) and the Train dock, at its own defaults, fine-tuning MODEL on them: the live
loss/mIoU plot and the live preview under the strokes. ``loop.png``: segment → correct: the view
moved by "Next uncertain region" to the first suggested square where the labels are wrong, and
the ensemble layer corrected there by a few strokes of the simulator, seeded on the errors, in the
true class. ``loop-steps.png``: that square's view in three steps: segmented, corrected, and
segmented again by the model the Train dock fine-tuned (its defaults) on the corrected layer.
Data: $CELLPREP_DATA, else ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch  # noqa: F401  (before Qt)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CELLPREP_DATA", REPO.parent / "shared" / "data")) / "nist-phase"
PLUGIN = "napari-cellprep"
WINDOW = (1800, 1100)
BRUSH = 7
"""Brush size of the simulated strokes, in pixels (napari's default brush is 10)."""


def wait(condition, timeout: float, what: str) -> None:
    """Process Qt events until ``condition()`` holds."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        QApplication.processEvents()
        time.sleep(0.1)  # few repaints: the software-rendered canvas would starve the job


def new_viewer():
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    return viewer


def scroll_to_top(widget) -> None:
    """Show a dock from its first field (its scroll areas scroll to the focused button)."""
    from qtpy.QtWidgets import QScrollArea

    parent = widget.native
    while parent is not None:
        if isinstance(parent, QScrollArea):
            parent.verticalScrollBar().setValue(0)
        parent = parent.parentWidget()


def painted_strokes(mask, total: int = 12, seed: int = 0):
    """``total`` brush strokes as a person paints them on a ground-truth ``mask`` (class indices):
    gently bending strokes about 60 px long, each inside one class, balanced over the classes;
    painted values (class + 1, 0 = not annotated)."""
    import numpy as np

    from benchmarks.harness.strokes import add_strokes, paint

    strokes = add_strokes(mask, total, np.random.default_rng(seed), brush=BRUSH, length=60)
    return paint(strokes, mask.shape)


def correction_strokes(mask, wrong, square, total: int = 4, seed: int = 0):
    """Strokes that correct a segmentation as a person does with the brush: ``total`` strokes about
    40 px long, seeded where the labels are ``wrong`` inside ``square`` (bool maps), each inside
    its class of the ground-truth ``mask``; painted values (class + 1, 0 = not painted)."""
    import numpy as np

    from benchmarks.harness.strokes import add_strokes, paint

    rng = np.random.default_rng(seed)
    strokes = add_strokes(mask, total, rng, brush=BRUSH, length=40, score=wrong.astype(float), within=square)
    return paint(strokes, mask.shape)


def segmented(model: Path, image, name: str, tile: int):
    """A viewer with ``image`` segmented by ``model`` in the Segment dock: (viewer, dock)."""
    from napari_cellprep._widgets.registry import get_registry

    viewer = new_viewer()
    viewer.add_image(image, name=name)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.select_model(get_registry().add_file(model))
    widget._tile.value = tile
    widget.run()
    wait(lambda: widget.controls.worker is None, 600, "the segmentation")
    if not widget.output_layers():
        raise RuntimeError(f"segmentation failed: {widget.controls.status.value}")
    return viewer, widget


def segment_png(model: Path, image, name: str, out: Path, tile: int) -> None:
    from qtpy.QtWidgets import QApplication

    viewer, widget = segmented(model, image, name, tile)
    scroll_to_top(widget)
    QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    print(f"wrote {out} ({widget.controls.status.value})")
    viewer.close()


def train_png(model: Path, image, mask, name: str, out: Path, epochs_shown: int) -> None:
    """The Train dock at its defaults, fine-tuning ``model`` on a few strokes, after
    ``epochs_shown`` epochs: the strokes drawn over the live preview."""
    from qtpy.QtWidgets import QApplication

    from napari_cellprep._widgets import train_widget
    from napari_cellprep._widgets.registry import get_registry

    viewer = new_viewer()
    viewer.add_image(image, name=name)
    strokes = viewer.add_labels(painted_strokes(mask), name="strokes")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    widget._start.value = train_widget.Start.FINE_TUNE
    widget._base.value = get_registry().add_file(model)
    widget._labels.value = strokes
    widget.train()
    if widget.controls.worker is None:
        raise RuntimeError(f"training did not start: {widget.controls.status.value}")
    viewer.layers.move(viewer.layers.index(strokes), len(viewer.layers))  # the strokes over the preview
    viewer.layers.selection.active = strokes
    wait(lambda: len(widget.plot.epochs) >= epochs_shown, 3600, f"{epochs_shown} epochs")
    QApplication.processEvents()
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    painted = int((strokes.data > 0).sum())
    print(f"wrote {out} ({painted} painted pixels; after {len(widget.plot.epochs)} epochs: "
          f"{widget.controls.status.value})")
    widget.stop()
    wait(lambda: widget.controls.worker is None, 600, "training to stop")
    viewer.close()


def canvas(viewer, caption: str):
    """The canvas as an RGBA array, ``caption`` written on it by napari's text overlay."""
    from qtpy.QtWidgets import QApplication

    text = viewer.canvas.overlays.text
    text.visible, text.text, text.font_size, text.color = True, caption, 14, "white"
    QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    text.visible = False
    return shot


def tile_miou(layer_values, mask) -> float:
    """mIoU of a fully labeled Labels layer's values (painted: class + 1) against a class-index mask."""
    from napari_cellprep.engine.images.labels import LabelKind, to_targets
    from napari_cellprep.engine.images.metrics import confusion_matrix, scores

    predicted = to_targets(layer_values, LabelKind.PAINTED, mask.shape)
    return scores(confusion_matrix(predicted, mask, int(mask.max()) + 1)).miou


def loop_png(model: Path, image, mask, name: str, out: Path, tile: int, epochs: int) -> None:
    """``out``: the window after Next uncertain region and a correction; ``loop-steps.png`` beside
    it: the canvas segmented, corrected, and segmented again after Train on the corrected layer."""
    import numpy as np
    from qtpy.QtWidgets import QApplication
    from skimage.io import imsave

    from napari_cellprep._widgets import train_widget

    viewer, widget = segmented(model, image, name, tile)
    ensemble, entry = widget._ensemble, widget._model.value
    before = tile_miou(ensemble.data, mask)
    truth = mask + 1  # painted values
    for _ in range(len(widget._cue.data)):  # the first suggested square where the labels are wrong
        region = widget.next_region()
        square = np.zeros(mask.shape, bool)
        square[region.top : region.bottom, region.left : region.right] = True
        wrong = square & (ensemble.data != truth)
        if wrong.any():
            break
    camera = viewer.scene.camera
    view = (camera.center, camera.zoom)
    steps = [canvas(viewer, f"1. segmented; paint here next: region {widget._next_index}")]
    painted = correction_strokes(mask, wrong, square) > 0
    changed = painted & (ensemble.data != truth)
    rows, cols = np.nonzero(painted)
    ensemble.data_setitem((rows, cols), truth[rows, cols])  # the strokes, as the brush paints them
    steps.append(canvas(viewer, f"2. corrected with a few strokes: {int(changed.sum())} pixels changed"))
    scroll_to_top(widget)
    QApplication.processEvents()
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    print(f"wrote {out} ({int(painted.sum())} pixels painted, {int(changed.sum())} of them changed; "
          f"{widget.controls.status.value})")

    # tabified with the Segment dock, so that the window and the canvas keep their size
    dock, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train", tabify=True)
    train._image.value, train._labels.value = viewer.layers[name], ensemble
    train._start.value, train._base.value = train_widget.Start.FINE_TUNE, entry
    train._epochs.value = epochs  # the dock's other settings are its defaults
    train.train()
    if train.controls.worker is None:
        raise RuntimeError(f"training did not start: {train.controls.status.value}")
    wait(lambda: train.controls.worker is None, 5400, "the fine-tuning")
    print(f"trained: {train.controls.status.value}")
    viewer.window.remove_dock_widget(dock)
    widget.select_model(train.trained)
    widget.run()
    wait(lambda: widget.controls.worker is None, 600, "the second segmentation")
    ensemble.visible = False  # the corrected layer is kept; the new ensemble is drawn in its place
    QApplication.processEvents()
    camera.center, camera.zoom = view
    fixed = float((widget._ensemble.data[changed] == truth[changed]).mean())
    caption = f"3. after Train: {100 * fixed:.0f}% of the corrected pixels as painted"
    steps.append(canvas(viewer, caption))
    if len({shot.shape for shot in steps}) > 1:
        raise RuntimeError(f"the canvas changed size between the steps: {[shot.shape for shot in steps]}")
    strip = np.concatenate([np.pad(shot, ((0, 0), (0, 8), (0, 0))) for shot in steps], axis=1)[:, :-8]
    imsave(out.with_name("loop-steps.png"), strip, check_contrast=False)
    after = tile_miou(widget._ensemble.data, mask)
    print(
        f"wrote {out.with_name('loop-steps.png')} (after Train {100 * fixed:.1f}% of the corrected pixels "
        f"as painted; mIoU of the whole tile {before:.3f} before, {after:.3f} after)"
    )
    viewer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a .cellprep checkpoint (e.g. the bundled default model)")
    parser.add_argument("--image", default=None, help="nist-phase image id (default: the first one)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder for the PNG files")
    parser.add_argument(
        "--epochs-shown", type=int, default=4, help="epochs plotted before train.png is taken"
    )
    parser.add_argument(
        "--loop-epochs", type=int, default=10, help="epochs of fine-tuning on the corrected layer"
    )
    parser.add_argument("--tile", type=int, default=256, help="inference tile size")
    parser.add_argument(
        "--only", choices=("segment", "train", "loop"), action="append", help="make only these (repeatable)"
    )
    args = parser.parse_args(argv)
    only = set(args.only or ("segment", "train", "loop"))

    from napari_cellprep.engine.images.io import read_image, read_mask

    images = sorted((DATA / "images").glob("*.tif"))
    if not images:
        parser.error(f"no nist-phase images in {DATA / 'images'} (set CELLPREP_DATA)")
    path = DATA / "images" / f"{args.image}.tif" if args.image else images[0]
    image, mask = read_image(path), read_mask(DATA / "masks" / f"{path.stem}.png")
    args.out.mkdir(parents=True, exist_ok=True)
    if "segment" in only:
        segment_png(args.model, image, path.stem, args.out / "segment.png", args.tile)
    if "train" in only:
        train_png(args.model, image, mask, path.stem, args.out / "train.png", args.epochs_shown)
    if "loop" in only:
        loop_png(args.model, image, mask, path.stem, args.out / "loop.png", args.tile, args.loop_epochs)


if __name__ == "__main__":
    main()
