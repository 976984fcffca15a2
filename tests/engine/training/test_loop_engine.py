"""The engine side of the interactive loop: painted-value conversions, correction weights and
the weighted loss, the time budget, and the most uncertain regions."""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_cellprep.engine.checkpoint import ModelInfo
from napari_cellprep.engine.errors import LabelError, SettingsError
from napari_cellprep.engine.images.labels import (
    LabelKind,
    annotated_pixels,
    correction_weights,
    labels_dtype,
    to_painted,
)
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.engine.prediction.uncertainty import coverage_discount, uncertain_regions
from napari_cellprep.engine.training.data import (
    LabeledImage,
    PatchSampler,
    from_mask,
    labeled_items,
    split_validation,
)
from napari_cellprep.engine.training.loop import train
from napari_cellprep.engine.training.losses import weighted_loss
from napari_cellprep.engine.training.plan import TrainConfig
from napari_cellprep.model import ModelConfig, ModelOutput, method_loss
from tests.conftest import disks


def test_painted_values_and_their_dtype():
    classes = np.array([[0, 1], [2, 1]], np.uint8)
    painted = to_painted(classes, 3)
    np.testing.assert_array_equal(painted, [[1, 2], [3, 2]])
    assert to_painted(np.array([254]), 255).dtype == np.uint8 and to_painted(np.array([255]), 256)[0] == 256
    assert labels_dtype(255) == np.uint8 and labels_dtype(256) == np.uint16


def test_correction_weights_mark_what_the_user_changed():
    predicted = np.array([[1, 2], [2, 1]], np.uint8)
    painted = np.array([[1, 1], [0, 1]], np.uint8)  # one pixel corrected, one erased
    np.testing.assert_array_equal(correction_weights(painted, predicted, 4.0), [[1, 4], [4, 1]])
    with pytest.raises(SettingsError):
        correction_weights(painted, predicted, 0.5)


def output(logits: torch.Tensor, branches: int = 2) -> ModelOutput:
    return ModelOutput(
        branch_logits=torch.stack([logits * (s + 1) for s in range(branches)], dim=1),
        ensemble_logits=logits,
        ensemble_weights=torch.ones(branches),
        ensemble_bias=torch.zeros(logits.shape[1]),
    )


def test_weighted_loss_is_the_weighted_mean_of_every_output():
    torch.manual_seed(0)
    out = output(torch.randn(2, 3, 8, 8))
    target = torch.randint(-1, 3, (2, 8, 8))
    weight = torch.where(torch.rand(2, 8, 8) < 0.2, 5.0, 1.0)
    loss, parts = weighted_loss(out, target, weight)
    labeled = target != -1
    expected = []
    for logits in [*out.branch_logits.unbind(1), out.ensemble_logits]:
        ce = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
        expected.append(float((ce * weight)[labeled].sum() / weight[labeled].sum()))
    assert parts == pytest.approx(expected, rel=1e-5) and float(loss) == pytest.approx(
        sum(expected), rel=1e-5
    )
    same, _ = weighted_loss(out, target, torch.ones(2, 8, 8))
    assert float(same) == pytest.approx(float(method_loss(out, target)[0]))  # equal weights: Eq. 1


def test_weights_travel_with_patches_and_corrections_stay_in_training():
    image, mask = disks(2, (64, 64))
    weight = np.ones(mask.shape, np.float32)
    weight[:16, :16] = 10.0
    [item] = labeled_items(image, mask, Normalization(), weights=weight)
    assert item.weight is not None and item.kind is LabelKind.CLASS_INDEX
    sampler = PatchSampler([item], 64, np.random.default_rng(0), augment=True)
    _, _, weights = sampler.sample(4)
    assert weights.shape == (4, 64, 64) and sorted(np.unique(weights)) == [1.0, 10.0]
    assert all((w == 10.0).sum() == 256 for w in weights)  # rotated and flipped with the patch
    for seed in range(5):
        train_items, val = split_validation([item], 0.5, seed=seed, block=16)
        assert (train_items[0].target[:16, :16] != -1).all()  # never held out
        assert all((v.target[:16, :16] == -1).all() for v in val)


def test_a_time_budget_ends_training_normally_with_the_best_model():
    items = [from_mask(*disks(seed), Normalization()) for seed in range(2)]
    info = ModelInfo(ModelConfig(num_classes=2, width=4, depth=2), ["background", "colony"])
    config = TrainConfig(
        epochs=10_000, steps_per_epoch=5, batch_size=2, patch_size=32, device="cpu", seconds=1.0
    )
    start = time.perf_counter()
    result = train(items, items, info, config)
    assert time.perf_counter() - start < 20
    assert result.out_of_time and not result.stopped and 1 <= result.epochs_run < 10_000
    assert result.model.info.training["out_of_time"] and result.model.info.training["time_budget_s"] == 1.0
    assert result.best_epoch is not None and len(result.history) == result.epochs_run
    with pytest.raises(SettingsError, match="time budget"):
        TrainConfig(seconds=0)


def test_uncertain_regions_are_the_most_uncertain_squares_and_do_not_overlap():
    disagreement = np.zeros((2, 200, 300), np.float32)
    disagreement[1, 100:140, 200:240] = 0.9
    disagreement[0, 10:30, 10:30] = 0.5
    regions = uncertain_regions(disagreement, size=64, count=4)
    assert len(regions) == 4 and regions[0].plane == (1,) and regions[1].plane == (0,)
    first = regions[0]
    assert first.top <= 100 and first.bottom >= 140 and first.left <= 200 and first.right >= 240
    assert first.score == pytest.approx(
        disagreement[1, first.top : first.bottom, first.left : first.right].mean()
    )
    for a in regions:
        assert a.bottom - a.top == 64 and a.right - a.left == 64
        for b in regions:
            if a is not b and a.plane == b.plane:
                assert a.bottom <= b.top or b.bottom <= a.top or a.right <= b.left or b.right <= a.left
    small = uncertain_regions(np.zeros((48, 48)), count=9)
    assert len(small) == 9 and small[0].bottom - small[0].top == 16  # a third of a small image


def test_the_cue_looks_away_from_what_is_already_painted():
    disagreement = np.zeros((256, 256))
    disagreement[:64, :64] = 1.0  # most uncertain, but painted
    disagreement[128:192, 128:192] = 0.8
    painted = np.zeros((256, 256), np.uint8)
    painted[30:34, 10:50] = 2
    discount = coverage_discount(painted)
    assert discount[painted > 0].max() == 0.0 and discount[200, 200] > 0.99
    assert discount[31, 81] == pytest.approx(1 - np.exp(-0.5), abs=1e-6)  # one radius from the stroke
    assert uncertain_regions(disagreement, count=1)[0].top == 0
    best = uncertain_regions(disagreement, count=2, painted=painted)
    assert (best[0].top, best[0].left) == (128, 128) and best[0].score == pytest.approx(0.8, abs=1e-3)
    assert best[1].top == 0 and best[1].score < 0.5
    assert np.array_equal(coverage_discount(np.zeros((2, 8, 8))), np.ones((2, 8, 8)))  # nothing painted
    with pytest.raises(ValueError, match="labels of the image that was segmented"):
        uncertain_regions(disagreement, painted=painted[:100])


def test_annotated_pixels_are_strokes_or_corrections():
    predicted = np.array([[1, 1, 2], [2, 2, 1]], np.uint8)
    strokes = np.array([[0, 3, 0], [1, 0, 0]], np.uint8)
    assert annotated_pixels(strokes).tolist() == [[False, True, False], [True, False, False]]
    corrected = predicted.copy()
    corrected[0, 0], corrected[1, 2] = 2, 0  # one pixel painted over, one erased
    assert annotated_pixels(corrected, predicted).tolist() == [[True, False, False], [False, False, False]]
    with pytest.raises(LabelError, match="cannot be compared"):
        annotated_pixels(corrected, predicted[:1])


def test_labeled_items_hold_every_labeled_plane_of_a_stack():
    image = np.stack([disks(s, (40, 40))[0] for s in range(3)])
    labels = np.zeros((3, 40, 40), np.uint8)
    labels[2, :5] = 2
    labels[2, 5:9] = 1
    items = labeled_items(image, labels, Normalization(), kind=LabelKind.PAINTED, name="z")
    assert [i.name for i in items] == ["z plane (2,)"] and set(np.unique(items[0].target)) == {-1, 0, 1}
    assert isinstance(items[0], LabeledImage)
