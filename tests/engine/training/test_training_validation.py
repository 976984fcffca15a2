"""Validation is scored the way test is: tiled whole-image prediction (issue #10 §2)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_cellprep.engine.checkpoint import LoadedModel, ModelInfo
from napari_cellprep.engine.events import StepEnd
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.engine.prediction.evaluation import evaluate
from napari_cellprep.engine.training.data import LabeledImage, from_mask
from napari_cellprep.engine.training.loop import TrainConfig, train
from napari_cellprep.engine.training.scoring import VALIDATION_MARGIN, scoring_windows, validation_scores
from napari_cellprep.model import IGNORE_INDEX, ModelConfig
from tests.conftest import disks

CONFIG = ModelConfig(num_classes=2, width=4, depth=2)
INFO = ModelInfo(CONFIG, ["background", "disk"], Normalization("minmax"))
SETTINGS = dict(batch_size=4, patch_size=32, steps_per_epoch=3, learning_rate=1e-2, device="cpu")


def _pairs(seeds, shape):
    return [disks(seed, shape) for seed in seeds]


def _items(pairs):
    return [from_mask(image, mask, INFO.normalization, name=f"image {k}") for k, (image, mask) in enumerate(pairs)]


def test_the_validation_miou_of_an_epoch_is_the_test_path_miou_of_its_model():
    # validation images larger than a tile (256), so that the tiling and its blending count
    val_pairs = _pairs([5, 6], (300, 270))
    result = train(_items(_pairs([1, 2], (96, 96))), _items(val_pairs), INFO, TrainConfig(epochs=4, **SETTINGS))
    kept = [event for event in result.history if event.best_model is not None]
    assert kept and len({round(event.val_miou, 6) for event in result.history}) > 1
    for event in kept:  # the model an improved epoch hands out is that epoch's model
        test = evaluate(event.best_model, val_pairs).scores  # raw images, normalised by the test path
        assert event.val_miou == pytest.approx(test.miou, abs=1e-9)
        assert event.val_iou == pytest.approx(test.iou, abs=1e-9)
    assert result.best_miou == pytest.approx(evaluate(result.model, val_pairs).scores.miou, abs=1e-9)


def test_an_already_normalised_item_is_not_normalised_again():
    image, mask = disks(3, (64, 64))
    item = from_mask(image, mask, INFO.normalization)
    model = train([item], None, INFO, TrainConfig(epochs=2, **SETTINGS)).model.model  # it tells disks apart
    scored = validation_scores(model, INFO, scoring_windows([item], CONFIG.size_multiple))
    assert scored == evaluate(LoadedModel(model, INFO), [(image, mask)]).scores  # as its raw image scores
    # values outside 0..1 (a hand-made item): min-max again would undo the change, clipping cut it
    shifted = LabeledImage(item.image * 3.0 - 1.0, item.target)
    assert validation_scores(model, INFO, scoring_windows([shifted], CONFIG.size_multiple)) != scored


def test_scoring_windows_hold_the_labels_with_a_margin_aligned_to_the_size_multiple():
    image = np.zeros((1, 400, 500), np.float32)
    full = LabeledImage(image, np.zeros((400, 500), np.int64))
    sparse_target = np.full((400, 500), IGNORE_INDEX, np.int64)
    sparse_target[201:210, 303:320] = 1
    sparse = LabeledImage(image, sparse_target)
    empty = LabeledImage(image, np.full((400, 500), IGNORE_INDEX, np.int64))
    windows = scoring_windows([full, sparse, empty], 16)
    assert len(windows) == 2
    assert windows[0][0].shape == (1, 400, 500) and windows[0][1].shape == (400, 500)  # the whole image
    sparse_image, sparse_labels, weight = windows[1]
    assert weight is None  # no loss weights: every pixel counts once
    top, left = (201 - VALIDATION_MARGIN) // 16 * 16, (303 - VALIDATION_MARGIN) // 16 * 16
    assert sparse_labels.shape == (210 + VALIDATION_MARGIN - top, 320 + VALIDATION_MARGIN - left)
    assert sparse_image.shape[1:] == sparse_labels.shape
    assert (sparse_labels != IGNORE_INDEX).sum() == sparse.labeled_pixels  # every labeled pixel scored
    assert np.shares_memory(sparse_image, image)  # views, no copies


def test_stop_during_validation_ends_training_with_no_epoch_counted():
    stop = threading.Event()

    def on_event(event):
        if isinstance(event, StepEnd) and event.step == event.steps_per_epoch:
            stop.set()  # after the epoch's last step: validation is next and must see it

    val = _items(_pairs([5], (96, 96)))
    result = train(
        _items(_pairs([1], (96, 96))), val, INFO, TrainConfig(epochs=3, **SETTINGS), stop=stop, callback=on_event
    )
    assert result.stopped and result.epochs_run == 0 and result.history == []


def test_scoring_counts_each_labeled_pixel_by_its_loss_weight():
    from napari_cellprep.engine.images.metrics import confusion_matrix, scores
    from napari_cellprep.engine.prediction.inference import predict
    from napari_cellprep.model import build_model

    image, mask = disks(4, (64, 64))
    model = build_model(CONFIG).eval()  # untrained: wrong on many pixels
    plain = from_mask(image, mask, INFO.normalization)
    labels = predict(LoadedModel(model, INFO), image).labels
    weight = np.where(labels != mask, np.float32(10.0), np.float32(1.0))  # its errors weigh 10
    weighted = LabeledImage(plain.image, plain.target, weight=weight)
    unweighted = validation_scores(model, INFO, scoring_windows([plain], CONFIG.size_multiple))
    scored = validation_scores(model, INFO, scoring_windows([weighted], CONFIG.size_multiple))
    assert scored.miou == pytest.approx(scores(confusion_matrix(labels, mask, 2, weight=weight)).miou)
    assert scored.miou < unweighted.miou
