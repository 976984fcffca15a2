"""The two-speed loop: the classifier's fast answer, pseudo-labels, the weight chosen on held-out
strokes, and a model that carries its classifier through a checkpoint into prediction."""

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("sklearn")

from napari_cellprep.engine.checkpoint import ModelInfo, load_checkpoint, save_checkpoint  # noqa: E402
from napari_cellprep.engine.classifier.fast import blend  # noqa: E402
from napari_cellprep.engine.events import EpochEnd  # noqa: E402
from napari_cellprep.engine.prediction.inference import predict  # noqa: E402
from napari_cellprep.engine.training import two_speed  # noqa: E402
from napari_cellprep.engine.training.data import LabeledImage, split_validation  # noqa: E402
from napari_cellprep.engine.training.live import PreviewReady, painted_items  # noqa: E402
from napari_cellprep.engine.training.plan import TrainConfig  # noqa: E402
from napari_cellprep.engine.training.recipe import RunPlan  # noqa: E402
from napari_cellprep.model import IGNORE_INDEX, ModelConfig  # noqa: E402
from tests.conftest import disks  # noqa: E402

INFO = ModelInfo(ModelConfig(num_classes=2, width=4, depth=2), ["background", "colony"])


def strokes(shape=(64, 64), seed=0):
    image, mask = disks(seed, shape)
    painted = np.zeros(mask.shape, np.uint8)
    painted[::7] = mask[::7] + 1
    return image, mask, painted


def test_pseudo_labels_keep_the_strokes_and_take_confident_pixels_at_two_weights():
    item = LabeledImage(np.zeros((1, 2, 3), np.float32), np.array([[1, -1, -1], [-1, -1, 0]]))
    p1 = np.array([[0.2, 0.95, 0.6], [0.75, 0.5, 0.5]], np.float32)
    (out,) = two_speed.pseudo_labeled([item], [np.stack([1 - p1, p1])])
    assert out.target.tolist() == [[1, 1, IGNORE_INDEX], [1, IGNORE_INDEX, 0]]  # strokes win over the guess
    assert out.weight.tolist() == [[2.0, 1.0, 0.0], [0.5, 0.0, 2.0]]


def test_the_weight_is_chosen_on_held_out_strokes():
    target = np.array([[0, 1, 1, -1]])
    val = [LabeledImage(np.zeros((1, 1, 4), np.float32), target)]
    right = np.array([[0.6, 0.4, 0.4, 0.5], [0.4, 0.6, 0.6, 0.5]], np.float32)[:, None]  # (C, 1, 4)
    wrong = np.array([[0.01, 0.99, 0.99, 0.5], [0.99, 0.01, 0.01, 0.5]], np.float32)[:, None]
    weight, scores = two_speed.choose_weight([wrong], [right], val, 2)  # only the classifier alone is right
    assert weight == 1.0 and scores[1.0] == 1.0 and scores[0.0] < 1.0 and two_speed.which(weight) == "classifier"
    weight, _ = two_speed.choose_weight([right], [right], val, 2)
    assert weight == 0.0 and two_speed.which(weight) == "network"  # a tie goes to the network, which learns on
    assert two_speed.which(0.5) == "ensemble"
    assert np.allclose(blend(right, wrong, 0.5).sum(axis=0), 1.0)


def test_the_job_answers_first_with_the_classifier_then_trains_and_keeps_it(tmp_path):
    image, mask, painted = strokes()
    items = painted_items(image, painted, rgb=False, in_channels=1, normalization=INFO.normalization,
                          class_names=INFO.class_names)
    train, val = split_validation(items, 0.2, 0)
    config = TrainConfig(epochs=2, steps_per_epoch=2, batch_size=2, patch_size=32, device="cpu")
    events, job = [], two_speed.two_speed_job(RunPlan(INFO, config, tuple(train), tuple(val)), preview=image)
    while True:
        try:
            events.append(next(job))
        except StopIteration as end:
            result = end.value
            break
    kinds = [type(e).__name__ for e in events]
    assert kinds[:2] == ["ClassifierFitted", "PreviewReady"]  # the fast answer comes before any step
    fitted, first = events[0], events[1]
    assert fitted.held_out is not None and fitted.held_out > 0.8  # the disks are easy for a forest
    assert (first.labels == mask).mean() > 0.9 and first.epoch == 0
    assert sum(isinstance(e, EpochEnd) for e in events) == 2 and "EnsembleChosen" in kinds
    chosen = [e for e in events if isinstance(e, two_speed.EnsembleChosen)][-1]
    fast = result.model.classifier
    assert fast is not None and fast.weight == chosen.weight and set(chosen.held_out) == set(two_speed.WEIGHTS)

    path = save_checkpoint(tmp_path / "two.cellprep", result.model.model, result.model.info, classifier=fast)
    loaded = load_checkpoint(path)
    assert loaded.classifier.weight == fast.weight
    a = predict(result.model, image, outputs=("classifier",))
    b = predict(loaded, image, outputs=("classifier",))
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.classifier_labels, b.classifier_labels)
    assert b.classifier_weight == fast.weight and (b.classifier_labels == mask).mean() > 0.9
    alone = predict(replace(loaded, classifier=fast.with_weight(1.0)), image, outputs=("classifier",))
    assert np.array_equal(alone.labels, alone.classifier_labels)  # weight 1: the classifier's labels
    network = predict(replace(loaded, classifier=None), image)
    none = predict(replace(loaded, classifier=fast.with_weight(0.0)), image)
    assert np.array_equal(network.labels, none.labels) and network.classifier_labels is None


def test_no_time_for_the_network_keeps_the_classifier_alone():
    image, mask, painted = strokes()
    items = painted_items(image, painted, rgb=False, in_channels=1, normalization=INFO.normalization,
                          class_names=INFO.class_names)
    config = TrainConfig(epochs=5, steps_per_epoch=2, batch_size=2, patch_size=32, device="cpu", seconds=1e-6)
    events, job = [], two_speed.two_speed_job(RunPlan(INFO, config, tuple(items)))
    while True:
        try:
            events.append(next(job))
        except StopIteration as end:
            result = end.value
            break
    assert [type(e).__name__ for e in events] == ["ClassifierFitted"] and result.epochs_run == 0
    assert result.model.classifier.weight == 1.0
    assert (predict(result.model, image).labels == mask).mean() > 0.9
    assert not any(isinstance(e, PreviewReady) for e in events)
