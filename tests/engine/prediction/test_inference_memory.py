"""What prediction allocates at full size: only the outputs asked for (numpy memory, measured
by tracemalloc as bytes per pixel of image growth, so fixed costs cancel)."""

import tracemalloc

import numpy as np

from napari_cellprep.engine.checkpoint import load_checkpoint
from napari_cellprep.engine.prediction.inference import predict


def _peak(loaded, image, outputs) -> int:
    tracemalloc.start()
    try:
        predict(loaded, image, tile=64, overlap=16, outputs=outputs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _bytes_per_pixel(loaded, cells, outputs) -> float:
    """Peak numpy memory per pixel added to a tall image (the band of tile rows stays the same)."""
    small, large = cells((384, 128)), cells((1152, 128))
    _peak(loaded, small, outputs)  # first-call costs out of the way
    return (_peak(loaded, large, outputs) - _peak(loaded, small, outputs)) / (large.size - small.size)


def test_labels_only_allocates_labels_only(tiny_checkpoint, cells):
    loaded = load_checkpoint(tiny_checkpoint)
    bare = predict(loaded, cells((96, 64)), outputs=())
    assert bare.labels.dtype == np.uint8
    assert all(getattr(bare, name) is None for name in ("probabilities", "filters", "disagreement"))
    assert _bytes_per_pixel(loaded, cells, ()) < 1.5  # the uint8 labels, nothing else image-sized
    # the measure sees a two-class float32 map when one is asked for (8 bytes per pixel more)
    assert _bytes_per_pixel(loaded, cells, ("probabilities",)) > 8.5


def test_disagreement_alone_keeps_no_branch_maps(tiny_checkpoint, cells):
    loaded = load_checkpoint(tiny_checkpoint)
    image = cells((128, 96))
    alone = predict(loaded, image, tile=64, overlap=16, outputs=("disagreement",))
    assert alone.branch_probabilities is None and alone.branch_labels is None
    both = predict(loaded, image, tile=64, overlap=16, outputs=("branches",))
    np.testing.assert_allclose(alone.disagreement, both.disagreement, atol=1e-6)
    # labels and the float32 map: 5 bytes per pixel, never the 24 of the (3, 2, H, W) branch maps
    assert _bytes_per_pixel(loaded, cells, ("disagreement",)) < 6
