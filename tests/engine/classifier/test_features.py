"""Multiscale pixel features: names, shape, halo, tiling, and agreement with scipy's filters."""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_cellprep.engine.classifier import SCALES, feature_names, halo, pixel_features

SMALL = (0.7, 1.6, 3.5)


def test_names_shape_and_batch():
    image = np.random.default_rng(0).random((2, 24, 20), dtype=np.float32)
    names = feature_names(2, SMALL)
    assert len(names) == len(set(names)) == 2 * 3 * 8
    assert names[0] == "c0:gaussian@0.7" and names[-1] == "c1:structure_eig2@3.5"
    assert feature_names(1)[:2] == ["gaussian@0.3", "gaussian@0.7"]  # 0.3: smoothing only
    assert len(feature_names(1)) == 1 + 6 * 8
    out = pixel_features(image, SMALL)
    assert out.shape == (len(names), 24, 20) and out.dtype == torch.float32
    batch = pixel_features(np.stack([image, image[:, ::-1].copy()]), SMALL)
    assert batch.shape == (2, len(names), 24, 20)
    assert torch.allclose(batch[0], out)
    assert pixel_features(image[0], SMALL).shape == (24, 24, 20)


def test_halo_covers_the_widest_filter():
    assert halo(SCALES) == 40 + 20  # σ 10: 4σ, plus the structure tensor's averaging at σ/2
    assert halo((1.0,)) == 4 + 2


def test_tile_equals_whole_image_inside_the_halo():
    rng = np.random.default_rng(1)
    image = ndi.gaussian_filter(rng.random((70, 64)), 2).astype(np.float32)
    whole = pixel_features(image, SMALL)
    h = halo(SMALL)
    top, left, size = 30, 28, 8
    tile = image[top - h : top + size + h, max(0, left - h) : left + size + h]
    offset = left - max(0, left - h)
    inside = pixel_features(tile, SMALL)[:, h : h + size, offset : offset + size]
    assert torch.allclose(inside, whole[:, top : top + size, left : left + size], atol=1e-5)


def test_filters_match_scipy():
    image = ndi.gaussian_filter(np.random.default_rng(2).random((48, 40)), 1.5)
    out = pixel_features(image.astype(np.float32), SMALL).numpy()
    names = feature_names(1, SMALL)
    for sigma in SMALL:
        for family, reference in [("gaussian", ndi.gaussian_filter), ("gradient_magnitude", ndi.gaussian_gradient_magnitude)]:
            expected = reference(image, sigma, mode="mirror", truncate=4.0)
            got = out[names.index(f"{family}@{sigma:g}")]
            # our derivative kernels are normalised to give 1 on a ramp; scipy's are not quite
            assert np.abs(got - expected).max() <= 5e-3 * np.abs(expected).max()
        hessian = [out[names.index(f"hessian_eig{k}@{sigma:g}")] for k in (1, 2)]
        assert (hessian[0] >= hessian[1]).all()
        laplacian = out[names.index(f"laplacian@{sigma:g}")]
        assert np.allclose(hessian[0] + hessian[1], laplacian, atol=1e-5)


def test_small_image_and_bad_shape():
    assert pixel_features(np.zeros((3, 5), np.float32)).shape == (len(feature_names()), 3, 5)
    with pytest.raises(ValueError):
        pixel_features(np.zeros(5, np.float32))
