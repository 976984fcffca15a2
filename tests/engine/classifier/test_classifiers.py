"""Pixel classifiers fitted on strokes: they learn, and their stored state (plain arrays, no pickle)
rebuilds them exactly."""

import json

import numpy as np
import pytest
import torch

from napari_cellprep.engine.classifier import (
    ClassifierState,
    ForestClassifier,
    classifier_from_state,
    feature_names,
    fit_classifier,
    painted_pixels,
    pixel_features,
)
from napari_cellprep.engine.errors import TrainingDataError

SCALES = (0.7, 1.6)
KINDS = {"forest": {"trees": 8, "max_depth": 6, "jobs": 1}, "mlp": {}}


def _two_regions(seed: int = 0):
    """A noisy image, bright left half and dark right half, with one stroke per half."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((32, 32), np.int64)
    truth[:, 16:] = 1
    image = np.where(truth == 0, 0.8, 0.2) + rng.normal(0, 0.05, truth.shape)
    labels = np.zeros(truth.shape, np.uint8)
    labels[4:28, 5:7] = 1
    labels[4:28, 25:27] = 2
    return pixel_features(image.astype(np.float32), SCALES), labels, truth


@pytest.mark.parametrize("kind", KINDS)
def test_learns_a_separable_image_from_strokes(kind):
    features, labels, truth = _two_regions()
    pytest.importorskip("sklearn") if kind == "forest" else None
    model = fit_classifier(features, labels, 2, kind=kind, feature_names=feature_names(1, SCALES), **KINDS[kind])
    probabilities = model.predict_proba(features)
    assert probabilities.shape == (2, 32, 32)
    assert torch.allclose(probabilities.sum(0), torch.ones(32, 32), atol=1e-5)
    away = np.abs(np.arange(32) - 15.5) > 3  # the filters (σ up to 1.6) blur the edge itself
    assert (probabilities.argmax(0).numpy() == truth)[:, away].all()
    batched = model.predict_proba(torch.stack([features, features]))
    assert torch.allclose(batched[1], probabilities, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_state_round_trip_without_pickle(kind):
    pytest.importorskip("sklearn") if kind == "forest" else None
    features, labels, _ = _two_regions(1)
    model = fit_classifier(features, labels, 2, kind=kind, feature_names=feature_names(1, SCALES), **KINDS[kind])
    state = model.state()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.arrays.values())
    meta = json.loads(json.dumps(state.meta))  # JSON-able
    rebuilt = classifier_from_state(ClassifierState({k: v.copy() for k, v in state.arrays.items()}, meta))
    assert type(rebuilt) is type(model) and rebuilt.feature_names == model.feature_names
    assert torch.equal(rebuilt.predict_proba(features), model.predict_proba(features))


def test_forest_reproduces_scikit_learn():
    sklearn = pytest.importorskip("sklearn.ensemble")
    features, labels, _ = _two_regions(2)
    x, y = painted_pixels(features, labels)
    x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0))  # deeper, less trivial trees
    forest = sklearn.RandomForestClassifier(n_estimators=5, max_depth=7, random_state=0).fit(x.numpy(), y.numpy())
    ours = ForestClassifier.from_sklearn(forest, 2, feature_names(1, SCALES))
    grid = torch.randn(x.shape[1], 20, 20, generator=torch.Generator().manual_seed(1))
    expected = forest.predict_proba(grid.permute(1, 2, 0).reshape(-1, x.shape[1]).numpy())
    got = ours.predict_proba(grid).permute(1, 2, 0).reshape(-1, 2).numpy()
    assert np.abs(got - expected).max() < 1e-6


def test_no_painted_pixels_is_a_user_error():
    features, labels, _ = _two_regions()
    with pytest.raises(TrainingDataError):
        painted_pixels(features, np.zeros_like(labels))
