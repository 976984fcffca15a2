"""engine.evaluation: predict and score a set of pairs, in either label convention, per branch."""

import numpy as np
import pytest
import torch

from napari_cellprep.engine.checkpoint import LoadedModel, ModelInfo
from napari_cellprep.engine.errors import LabelError
from napari_cellprep.engine.images.labels import LabelKind
from napari_cellprep.engine.images.metrics import confusion_matrix
from napari_cellprep.engine.prediction.evaluation import PairScored, evaluate, evaluate_iter
from napari_cellprep.engine.prediction.inference import predict
from napari_cellprep.model import ModelConfig, build_model
from tests.conftest import disks


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    config = ModelConfig(num_classes=2, width=4, depth=2)
    torch.manual_seed(0)
    return LoadedModel(build_model(config).eval(), ModelInfo(config, ["background", "colony"]))


def test_one_confusion_matrix_over_all_pairs_and_per_branch(model):
    pairs = [disks(seed, (64, 64)) for seed in range(2)]
    events = list(evaluate_iter(model, pairs, names=["a", "b"], outputs=("branches",)))
    assert [(e.done, e.total, e.message) for e in events] == [(1, 2, "a"), (2, 2, "b")]
    assert all(isinstance(e, PairScored) and e.prediction.branch_labels is not None for e in events)
    result = evaluate(model, pairs, outputs=("branches",))
    expected = sum(confusion_matrix(predict(model, image).labels, mask, 2) for image, mask in pairs)
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.branch_confusion.shape == (3, 2, 2)
    assert (result.branch_confusion.sum(axis=(1, 2)) == 2 * 64 * 64).all()  # each branch counts every pixel
    assert len(result.branch_scores) == 3
    report = result.report(["background", "colony"])
    assert report["pixels"] == 2 * 64 * 64 and report["miou"] == pytest.approx(result.scores.miou)


def test_painted_labels_score_only_the_painted_pixels(model):
    image, mask = disks(3, (64, 64))
    painted = np.zeros_like(mask)
    painted[:10] = mask[:10] + 1
    result = evaluate(model, [(image, painted)], kind=LabelKind.PAINTED)
    labels = predict(model, image).labels
    np.testing.assert_array_equal(result.confusion, confusion_matrix(labels[:10], mask[:10], 2))


def test_labels_that_do_not_fit_are_user_errors(model):
    image, mask = disks(3, (64, 64))
    with pytest.raises(LabelError, match="x: mask value 5 is not a class"):
        evaluate(model, [(image, np.full_like(mask, 5))], names=["x"])
    with pytest.raises(
        LabelError, match=r"x gives labels of shape \(64, 64\) but its labels have shape \(32, 64\)"
    ):
        evaluate(model, [(image, mask[:32])], names=["x"])
