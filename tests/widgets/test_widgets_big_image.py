"""The Segment dock on dask/zarr-backed and multiscale layers (out of core into a zarr store, shown
as lazy layers) and on the current view only."""

import threading

import numpy as np
import pytest
import zarr

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cellprep._widgets.layers import MARKER
from napari_cellprep.engine.bigimage import blocks  # noqa: E402
from napari_cellprep.engine.checkpoint import load_checkpoint  # noqa: E402
from napari_cellprep.engine.images import normalize
from napari_cellprep.engine.prediction.inference import predict  # noqa: E402
from tests.widgets.test_widgets_segment import open_segment, run_and_wait  # noqa: E402

pytestmark = pytest.mark.napari


class Recorded:
    """An array that records how many pixels each read asks for, and from which thread."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.reads = array, []
        self.shape, self.dtype, self.ndim, self.size = array.shape, array.dtype, array.ndim, array.size

    def __getitem__(self, key):
        out = self.array[key]
        self.reads.append((threading.current_thread() is threading.main_thread(), np.size(out)))
        return out

    def __array__(self, dtype=None, copy=None):
        self.reads.append((threading.current_thread() is threading.main_thread(), self.array.size))
        return self.array if dtype is None else self.array.astype(dtype)

    def engine_reads(self) -> list[int]:
        return [n for main, n in self.reads if not main]


@pytest.mark.parametrize("multiscale", [False, True])
def test_big_layers_go_block_by_block_to_a_store_shown_lazily(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, cells, tmp_path, monkeypatch, multiscale
):
    dask = pytest.importorskip("dask.array")
    monkeypatch.setattr(blocks, "BLOCK_BUDGET", 192**2 * 4 * 18)  # blocks of 192² px: 4 × 3 of them
    monkeypatch.setattr(normalize, "STAT_ROWS", 128)
    image = cells((600, 520))
    full = Recorded(image)
    data = [full, image[::2, ::2]] if multiscale else dask.from_array(full, chunks=(128, 128))
    viewer = make_napari_viewer()
    viewer.add_image(data, name="cells", multiscale=multiscale)
    widget = open_segment(viewer, registry, tiny_checkpoint)
    widget._big.store.value = str(tmp_path / "out.zarr")
    widget._tile.value = 128  # tiles of 128 px with 32 px overlap: a block's window is a part of the image
    run_and_wait(qtbot, widget)
    assert "Done" in widget.controls.status.value, widget.controls.status.value
    ensemble = next(out for out in widget.output_layers() if out.name == "cells | ensemble")
    level0 = ensemble.data[0] if multiscale else ensemble.data
    assert ensemble.multiscale == multiscale and level0.shape == (600, 520)
    expected = predict(load_checkpoint(tiny_checkpoint), image, tile=128, overlap=32).labels + 1
    assert np.array_equal(np.asarray(level0), expected)  # painted values, every block written
    stored = zarr.open_group(tmp_path / "out.zarr", mode="r").attrs["cellprep"]["settings"]["precision"]
    assert ensemble.metadata[MARKER]["precision"] == stored == widget.precision_used.value == "float32"
    if multiscale:
        assert np.array_equal(np.asarray(ensemble.data[1]), expected[::2, ::2])
        reads = full.engine_reads()
        assert reads and max(reads) < image.size  # read window by window, never whole


def test_current_view_only_segments_the_visible_region(make_napari_viewer, qtbot, registry, tiny_checkpoint, cells):
    image = cells((400, 400))
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells", scale=(2.0, 2.0))
    widget = open_segment(viewer, registry, tiny_checkpoint)
    viewer.camera.center = (200.0, 300.0)  # world: data row 100, column 150
    viewer.camera.zoom = 4 * max(viewer.canvas.size) / 400  # a view of about 100 world = 50 data pixels
    widget._big.view_only.value = True
    run_and_wait(qtbot, widget)
    ensemble = next(out for out in widget.output_layers() if out.name == "cells | ensemble")
    h, w = ensemble.data.shape
    assert h * w < image.size / 8
    top, left = (np.asarray(ensemble.translate) / 2.0).astype(int)
    assert top <= 100 < top + h and left <= 150 < left + w
    crop = image[top : top + h, left : left + w]
    assert np.array_equal(ensemble.data, predict(load_checkpoint(tiny_checkpoint), crop, tile=256, overlap=64).labels + 1)


def test_a_store_inside_the_layers_own_file_is_refused_in_the_dock(
    make_napari_viewer, qtbot, registry, tiny_checkpoint, cells, tmp_path
):
    import zarr
    from napari.layers._source import layer_source

    source = tmp_path / "in.zarr"
    data = zarr.create_array(source, data=cells((96, 96)))
    viewer = make_napari_viewer()
    with layer_source(path=str(source)):
        viewer.add_image(data, name="cells")
    widget = open_segment(viewer, registry, tiny_checkpoint)
    widget._big.store.value = str(source / "out.zarr")
    run_and_wait(qtbot, widget)
    assert "lies inside the input" in widget.controls.status.value, widget.controls.status.value
    assert not (source / "out.zarr").exists()
