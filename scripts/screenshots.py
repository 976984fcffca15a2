"""Documentation screenshots of the napari plugin: docs/images/segment.png, docs/images/train.png, docs/images/loop.png,
docs/images/loop-steps.png.

Run under a virtual display with a true-colour screen (never QT_QPA_PLATFORM=offscreen):

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python -m scripts.screenshots MODEL.cellprep

``segment.png``: the Segment dock's outputs side by side (grid) on a real nist-phase tile.
``train.png``: the Train dock mid-training (fine-tuning MODEL on scribbles taken from the
tile's ground-truth mask), with its live loss/mIoU plot. ``loop.png``: segment → correct:
the view moved by "Next uncertain region" to the most uncertain square (outlined), where the
ensemble labels have been corrected with the brush (here: set to the ground truth inside that
square). ``loop-steps.png``: that square's view in three steps: segmented, corrected, and
segmented again by the model the Train dock fine-tuned on the corrected layer.
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
WINDOW = (1800, 1000)


def wait(condition, timeout: float, what: str) -> None:
    """Process Qt events until ``condition()`` holds."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        QApplication.processEvents()
        time.sleep(0.02)


def new_viewer():
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    return viewer


def scribbles(mask, every: int = 12, width: int = 3):
    """Sparse painted strokes from a ground-truth mask: horizontal lines, value = class + 1."""
    import numpy as np

    labels = np.zeros(mask.shape, np.uint8)
    for row in range(every // 2, mask.shape[0], every):
        labels[row : row + width] = mask[row : row + width] + 1
    return labels


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
    QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    print(f"wrote {out} ({widget.controls.status.value})")
    viewer.close()


def train_png(model: Path, image, mask, name: str, out: Path, epochs_shown: int, patch: int) -> None:
    from qtpy.QtWidgets import QApplication

    from napari_cellprep._widgets import train_widget
    from napari_cellprep._widgets.registry import get_registry

    viewer = new_viewer()
    viewer.add_image(image, name=name)
    viewer.add_labels(scribbles(mask), name="scribbles")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    entry = get_registry().add_file(model)
    widget._start.value = train_widget.Start.FINE_TUNE
    widget._base.value = entry
    widget._epochs.value, widget._steps.value = max(3 * epochs_shown, 10), 4
    widget._batch.value, widget._patch.value = 4, patch
    widget._validation.value = train_widget.Validation.FRACTION
    widget.train()
    if widget.controls.worker is None:
        raise RuntimeError(f"training did not start: {widget.controls.status.value}")
    wait(lambda: len(widget.plot.epochs) >= epochs_shown, 1200, f"{epochs_shown} epochs")
    QApplication.processEvents()
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    print(f"wrote {out} (after {len(widget.plot.epochs)} epochs: {widget.controls.status.value})")
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
    for _ in range(len(widget._cue.data)):  # the first suggested square where the labels are wrong
        region = widget.next_region()
        rows, cols = np.mgrid[region.top : region.bottom, region.left : region.right]
        truth = mask[region.top : region.bottom, region.left : region.right] + 1
        wrong = ensemble.data[rows, cols] != truth
        if wrong.any():
            break
    camera = viewer.scene.camera
    view = (camera.center, camera.zoom)
    steps = [canvas(viewer, f"1. segmented; paint here next: region {widget._next_index}")]
    ensemble.data_setitem((rows[wrong], cols[wrong]), truth[wrong])  # the correction, as the brush paints
    steps.append(canvas(viewer, f"2. corrected: {int(wrong.sum())} pixels"))
    QApplication.processEvents()
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    print(f"wrote {out} ({int(wrong.sum())} pixels corrected; {widget.controls.status.value})")

    # tabified with the Segment dock, so that the window and the canvas keep their size
    dock, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train", tabify=True)
    train._image.value, train._labels.value = viewer.layers[name], ensemble
    train._start.value, train._base.value = train_widget.Start.FINE_TUNE, entry
    train._epochs.value = epochs
    train.train()
    if train.controls.worker is None:
        raise RuntimeError(f"training did not start: {train.controls.status.value}")
    wait(lambda: train.controls.worker is None, 1800, "the fine-tuning")
    print(f"trained: {train.controls.status.value}")
    viewer.window.remove_dock_widget(dock)
    widget.select_model(train.trained)
    widget.run()
    wait(lambda: widget.controls.worker is None, 600, "the second segmentation")
    ensemble.visible = False  # the corrected layer is kept; the new ensemble is drawn in its place
    QApplication.processEvents()
    camera.center, camera.zoom = view
    again = widget._ensemble.data[rows, cols]
    fixed = float((again[wrong] == truth[wrong]).mean())
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
    parser.add_argument("--patch", type=int, default=128, help="training patch size")
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
        train_png(args.model, image, mask, path.stem, args.out / "train.png", args.epochs_shown, args.patch)
    if "loop" in only:
        loop_png(args.model, image, mask, path.stem, args.out / "loop.png", args.tile, args.loop_epochs)


if __name__ == "__main__":
    main()
