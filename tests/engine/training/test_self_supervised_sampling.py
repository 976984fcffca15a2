"""Where training patches come from when the Noise2Void term is on (issue #10 §1, DenoiSeg style):
a share of each batch anywhere in the images, labeled or not; with the weight at 0, exactly the
patches drawn before that share existed."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from napari_cellprep.engine.checkpoint import ModelInfo
from napari_cellprep.engine.errors import SettingsError, TrainingDataError
from napari_cellprep.engine.training import loop as training
from napari_cellprep.engine.training.data import LabeledImage, PatchSampler
from napari_cellprep.engine.training.loop import TrainConfig, train
from napari_cellprep.model import ModelConfig

HEIGHT, WIDTH = 96, 128


def _strokes() -> LabeledImage:
    """Two short strokes on an image whose value is each pixel's position (row · WIDTH + column,
    exact in float32), so that a patch's minimum is its top-left corner in any orientation."""
    target = np.full((HEIGHT, WIDTH), -1, dtype=np.int64)
    target[10:14, 20:50] = 0
    target[70:73, 90:120] = 1
    weight = np.ones((HEIGHT, WIDTH), np.float32)
    weight[70:73, 100:110] = 3
    position = np.arange(HEIGHT * WIDTH, dtype=np.float32).reshape(1, HEIGHT, WIDTH)
    return LabeledImage(position, target, "strokes", weight=weight)


def _describe(batch) -> list[tuple[int, int, int, float]]:
    """(corner, first pixel (orientation), labeled pixels, weight sum) of each patch."""
    images, targets, weights = batch
    return [
        (round(float(i[0].min())), round(float(i[0, 0, 0])), int((t >= 0).sum()), float(w.sum()))
        for i, t, w in zip(images, targets, weights)
    ]


# drawn by PatchSampler(seed 7, 32² patches, augment) before the self-supervised share existed (commit 8932db9)
BEFORE = [
    [(6743, 10711, 87, 1084.0), (8288, 8319, 72, 1084.0), (8278, 12246, 84, 1084.0), (19, 4018, 120, 1024.0)],
    [(8124, 8155, 6, 1024.0), (6860, 10828, 54, 1072.0), (6624, 6624, 72, 1084.0), (8282, 12250, 90, 1084.0)],
    [(1555, 5523, 60, 1024.0), (5459, 9458, 75, 1084.0), (33, 64, 68, 1024.0), (521, 4489, 84, 1024.0)],
]


@pytest.mark.parametrize("anywhere", [None, 0.0])
def test_without_the_share_patches_are_drawn_exactly_as_before(anywhere):
    options = {} if anywhere is None else {"anywhere": anywhere}
    sampler = PatchSampler([_strokes()], 32, np.random.default_rng(7), True, **options)
    assert [_describe(sampler.sample(4)) for _ in BEFORE] == BEFORE
    assert sampler.rng.integers(1 << 30) == 774142408  # and the generator is where it was left


class _Recording(PatchSampler):
    """PatchSampler keeping what it was asked for and what it drew."""

    made: ClassVar[list[_Recording]] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []
        _Recording.made.append(self)

    def sample(self, batch_size):
        batch = super().sample(batch_size)
        self.batches.append(batch)
        return batch


def _train_recording(monkeypatch, **settings) -> _Recording:
    _Recording.made = []
    monkeypatch.setattr(training, "PatchSampler", _Recording)
    config = ModelConfig(num_classes=2, width=4, depth=2, denoise_head=True)
    item = _strokes()
    item.image = item.image / item.image.max()  # the same patches; a sane input for the network
    train(
        [item],
        None,
        ModelInfo(config, ["a", "b"]),
        TrainConfig(
            epochs=1, steps_per_epoch=3, batch_size=4, patch_size=32, device="cpu", seed=7, **settings
        ),
    )
    (sampler,) = _Recording.made
    return sampler


def test_training_at_weight_zero_draws_the_same_patches_whatever_the_share(monkeypatch):
    sampler = _train_recording(monkeypatch, self_supervised_share=0.75)
    assert sampler.anywhere == 0.0  # the share only applies with the Noise2Void term on
    scaled = [_describe((images * (HEIGHT * WIDTH - 1), t, w)) for images, t, w in sampler.batches]
    assert scaled == BEFORE


def test_with_a_positive_weight_a_share_of_each_batch_lies_anywhere(monkeypatch):
    sampler = _train_recording(monkeypatch, self_supervised_weight=1.0)
    assert sampler.anywhere == 0.5  # the default share: the last 2 of each batch of 4
    for _, targets, _ in sampler.batches:
        assert all((t >= 0).any() for t in targets[:2])  # around a labeled pixel, as before

    # many batches: the last half covers the image uniformly, mostly away from the strokes
    sampler = PatchSampler([_strokes()], 32, np.random.default_rng(0), True, anywhere=0.5)
    corners, unlabeled = [], 0
    for _ in range(200):
        images, targets, weights = sampler.sample(4)
        assert all((t >= 0).any() for t in targets[:2])
        for image, target in zip(images[2:], targets[2:]):
            corners.append(divmod(int(image[0].min()), WIDTH))
            unlabeled += not (target >= 0).any()
        assert (weights[2:] >= 1).all()  # the weights still follow their patches
    rows, cols = np.array(corners).T
    assert rows.min() == 0 and rows.max() == HEIGHT - 32 and cols.min() == 0 and cols.max() == WIDTH - 32
    assert unlabeled > 100  # of 400: no labeled pixel in the patch, only the Noise2Void term learns there


def test_the_share_takes_images_without_labels_and_is_checked():
    blank = LabeledImage(np.zeros((1, 64, 64), np.float32), np.full((64, 64), -1), "blank")
    sampler = PatchSampler([_strokes(), blank], 32, np.random.default_rng(0), False, anywhere=1.0)
    images, targets, weights = sampler.sample(64)  # every patch anywhere, blank drawn by its area
    from_blank = (images == 0).all(axis=(1, 2, 3)) & (targets == -1).all(axis=(1, 2))
    assert 5 < from_blank.sum() < 40 and (weights[from_blank] == 1).all()
    half = PatchSampler([_strokes(), blank], 32, np.random.default_rng(0), False, anywhere=0.5)
    assert all((half.sample(1)[1] >= 0).any() for _ in range(20))  # int(0.5 · 1) = 0: a lone patch has labels
    with pytest.raises(TrainingDataError, match="smaller than the patch size 32"):
        PatchSampler(
            [_strokes(), LabeledImage(blank.image[:, :20], blank.target[:20], "thin")],
            32,
            np.random.default_rng(0),
            anywhere=0.5,
        )
    PatchSampler(
        [_strokes(), LabeledImage(blank.image[:, :20], blank.target[:20])], 32, np.random.default_rng(0)
    )
    for bad in (-0.1, 1.5):
        with pytest.raises(SettingsError, match="self_supervised_share must be between 0 and 1"):
            TrainConfig(self_supervised_share=bad)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            PatchSampler([_strokes()], 32, np.random.default_rng(0), anywhere=bad)
