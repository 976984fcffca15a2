"""scripts/synthetic_tiles.py: drawn tiles of generic structures for training the bundled model."""


import numpy as np
import pytest
from scipy import ndimage

from scripts.synthetic_tiles import synthetic_tile


def test_a_tessellation_marks_thin_connected_boundaries_between_cells():
    image, mask = synthetic_tile(np.random.default_rng(3), size=128, kind="tessellation")
    assert image.shape == mask.shape == (128, 128)
    assert image.dtype == np.float32 and image.min() == 0.0 and image.max() == 1.0
    assert set(np.unique(mask)) == {0, 1}
    assert 0.02 < mask.mean() < 0.35  # boundaries, not regions
    # the cells between boundaries are many separate regions
    assert ndimage.label(mask == 0)[1] >= 4
    # boundaries are thin: eroding twice leaves almost nothing
    assert ndimage.binary_erosion(mask, iterations=3).sum() < 0.05 * mask.sum()


def test_blobs_are_compact_objects_whose_pixels_differ_from_the_rest():
    image, mask = synthetic_tile(np.random.default_rng(4), size=128, kind="blobs")
    assert mask.any() and not mask.all()
    assert ndimage.binary_erosion(mask, iterations=2).sum() > 0.2 * mask.sum()  # solid, not lines
    # the structure has a contrast: its mean brightness differs from the rest's
    assert abs(image[mask == 1].mean() - image[mask == 0].mean()) > 0.01


def test_tiles_are_reproducible_from_their_generator_and_vary_between_draws():
    a = synthetic_tile(np.random.default_rng(5), size=64)
    b = synthetic_tile(np.random.default_rng(5), size=64)
    c = synthetic_tile(np.random.default_rng(6), size=64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_an_unknown_kind_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="tessellation"):
        synthetic_tile(np.random.default_rng(0), kind="stars")


def test_the_default_models_extra_training_items_keep_their_labels(tmp_path):
    import tifffile

    from napari_cellprep.engine.images.normalize import Normalization
    from scripts.train_default import low_light_copies, synthetic_items

    image = np.tile(np.linspace(100, 4000, 64, dtype=np.float32), (64, 1)).astype(np.uint16)
    mask = (image > 2000).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "a_mask.tif", mask)
    pair = (tmp_path / "a.tif", tmp_path / "a_mask.tif")
    copies = low_light_copies([pair], Normalization("minmax"), 2, seed=0)
    assert len(copies) == 2
    for item in copies:
        assert np.array_equal(item.target, mask)
        assert item.image.shape == (1, 64, 64) and 0.0 <= item.image.min() and item.image.max() <= 1.0
        # noisy: neighbouring pixels of the smooth ramp differ far more than in the clean image
        assert np.abs(np.diff(item.image[0], axis=0)).mean() > 0.01
    assert not np.array_equal(copies[0].image, copies[1].image)  # each copy at its own light level
    drawn = synthetic_items(3, seed=0)
    assert [item.target.shape for item in drawn] == [(256, 256)] * 3
    assert all(set(np.unique(item.target)) == {0, 1} and item.image.shape == (1, 256, 256) for item in drawn)
