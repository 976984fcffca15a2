"""The bundled default model on its three sample tiles, as issue #10 §3 asks of it: filters
without a dot grid, and a network 1 branch that segments."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness.periodicity import lattice_ratio
from napari_cellprep.engine.checkpoint import load_default
from napari_cellprep.engine.images.io import read_image, read_mask, sample_paths
from napari_cellprep.engine.prediction.evaluation import evaluate
from napari_cellprep.engine.prediction.inference import predict


@pytest.fixture(scope="module")
def bundled():
    return load_default()


def test_its_filters_have_no_more_lattice_power_than_white_noise_on_the_sample_tiles(bundled):
    """Share of spectral power at the period-4 lattice frequencies, filter over input: at most
    10× (white noise sits near 10×; the first bundled model's dot grid had 63–18 057×)."""
    paths = sample_paths()
    assert len(paths) == 3
    for path in paths:
        image = read_image(path).astype(np.float64)
        filters = predict(bundled, image, outputs=("filters",)).filters
        assert len(filters) == bundled.info.config.num_classes
        ratios = [lattice_ratio(f, image) for f in filters]
        assert max(ratios) <= 10, (path.name, ratios)
        assert all(f.std() > 0 for f in filters)  # every filter is a live image, not a dead one


def test_network_1s_own_branch_segments_the_sample_tiles(bundled, data_root):
    masks = data_root / "nist-phase" / "masks"
    for path in sample_paths():
        mask = read_mask(masks / (path.stem.removeprefix("nist_") + ".png"))
        evaluation = evaluate(bundled, [(read_image(path), mask)], outputs=("branches",))
        assert evaluation.branch_scores[0].miou >= 0.6, path.name  # network 1's branch
        assert evaluation.scores.miou >= 0.8, path.name  # the ensemble
