import numpy as np
import pytest

from napari_cellprep.engine.errors import LabelError
from napari_cellprep.engine.images.labels import LabelKind
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.engine.training.data import (
    LabeledImage,
    PatchSampler,
    TrainingDataError,
    check_training_data,
    from_mask,
    from_painted,
    grid_crops,
    labeled_box_area,
    split_validation,
)

MINMAX = Normalization()


def item(target, name="x", channels=1, kind=LabelKind.CLASS_INDEX):
    target = np.asarray(target, dtype=np.int64)
    return LabeledImage(np.zeros((channels,) + target.shape, np.float32), target, name, kind)


def test_from_painted_maps_zero_to_unlabeled_and_v_to_class_v_minus_1():
    image = np.array([[100, 200], [300, 500]], dtype=np.uint16)
    labels = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    data = from_painted(image, labels, MINMAX, name="a")
    np.testing.assert_array_equal(data.target, [[-1, 0], [1, 2]])
    assert data.target.dtype == np.int64
    np.testing.assert_allclose(data.image, [[[0.0, 0.25], [0.5, 1.0]]])
    assert data.image.dtype == np.float32 and data.name == "a"
    assert data.labeled_pixels == 3


def test_from_mask_keeps_class_indices_and_reads_rgb_channels():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 36, 3)).astype(np.uint8)
    mask = rng.integers(0, 3, (40, 36)).astype(np.uint8)
    data = from_mask(rgb, mask, MINMAX, in_channels=3)
    assert data.image.shape == (3, 40, 36)
    np.testing.assert_array_equal(data.target, mask)
    for c in range(3):
        assert data.image[c].min() == 0.0 and data.image[c].max() == pytest.approx(1.0)
    first = data.image[0]
    np.testing.assert_allclose(first, (rgb[..., 0] - rgb[..., 0].min()) / np.ptp(rgb[..., 0]), rtol=1e-6)


def test_from_mask_and_from_painted_errors():
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(TrainingDataError, match=r"cells: the mask have shape \(8, 7\) but the image has \(8, 8\)"):
        from_mask(image, np.zeros((8, 7), np.uint8), MINMAX, name="cells")
    with pytest.raises(TrainingDataError, match="2D images; pass one plane"):
        from_painted(np.zeros((3, 8, 8)), np.zeros((3, 8, 8), np.uint8), MINMAX)
    with pytest.raises(TrainingDataError, match=r"negative value -2; use values 1..C \(0 = not annotated\)"):
        from_painted(image, np.full((8, 8), -2), MINMAX)
    with pytest.raises(TrainingDataError, match="non-integer"):
        from_mask(image, np.full((8, 8), 0.5), MINMAX)
    with pytest.raises(TrainingDataError, match="expects 3 channels"):
        from_mask(np.zeros((8, 8)), np.zeros((8, 8), np.uint8), MINMAX, in_channels=3)


def test_check_training_data_accepts_valid_data():
    check_training_data([item([[0, 1], [-1, 1]]), item([[-1, -1], [-1, -1]])], 2, 2)


@pytest.mark.parametrize(
    "items, message",
    [
        ([], "no training images"),
        ([item(np.full((4, 4), -1))], "there are no labeled pixels"),
        (
            [item([[0, 2], [1, -1]], kind=LabelKind.PAINTED)],
            r"x: painted value 3 is not a class: the model has 2 classes \(values 1..2\)",
        ),
        (
            [item([[0, 2], [1, -1]])],
            r"x: mask value 2 is not a class: the model has 2 classes \(values 0..1\)",
        ),
        (
            [item([[0, 0], [0, -1]], kind=LabelKind.PAINTED)],
            r"class 1 \(painted value 2\) has no labeled pixel: paint some pixels of every class",
        ),
        ([item([[0, 0], [0, -1]])], r"class 1 has no labeled pixel: masks hold class indices .* 0/255"),
        ([item([[0, 1], [1, 1]]), item(np.zeros((2, 2)), channels=3)], "different channel counts"),
    ],
)
def test_check_training_data_errors(items, message):
    with pytest.raises(LabelError, match=message):
        check_training_data(items, 2, 2)


def test_check_training_data_rejects_labeled_images_smaller_than_the_patch():
    items = [item(np.full((2, 1), -1), "unlabeled"), item(np.zeros((9, 9)) + np.eye(9), "big")]
    check_training_data(items, 2, 3)  # an unlabeled small image is never sampled
    with pytest.raises(
        TrainingDataError,
        match="small is 2×2 pixels, smaller than the patch size 3: choose a patch size of at most 2",
    ):
        check_training_data(items + [item([[0, 1], [1, 1]], "small")], 2, 3)


def test_check_training_data_names_every_missing_class():
    with pytest.raises(
        TrainingDataError, match=r"class 0 \(painted value 1\), class 2 \(painted value 3\) have"
    ):
        check_training_data([item([[1, 1]], kind=LabelKind.PAINTED)], 3, 1)


def test_split_validation_never_shares_a_pixel_and_holds_out_about_the_fraction():
    rng = np.random.default_rng(0)
    dense = item(rng.integers(0, 2, (96, 128)), "dense")
    sparse = item(np.full((64, 64), -1), "sparse")
    sparse.target[10:50, 5:20] = 1
    train, val = split_validation([dense, sparse], 0.25, seed=3, block=16)
    total = dense.labeled_pixels + sparse.labeled_pixels
    held = sum(v.labeled_pixels for v in val)
    assert 0.2 * total <= held <= 0.35 * total
    for original in (dense, sparse):
        t = [x for x in train if x.name == original.name]
        v = [x for x in val if x.name == original.name]
        t_target = t[0].target if t else np.full_like(original.target, -1)
        v_target = v[0].target if v else np.full_like(original.target, -1)
        assert not ((t_target >= 0) & (v_target >= 0)).any()
        np.testing.assert_array_equal(np.where(v_target >= 0, v_target, t_target), original.target)
        for side in t + v:
            assert side.image is original.image
    # validation pixels come in whole blocks: every 16x16 block of the dense image is on one side
    v_dense = next(x for x in val if x.name == "dense").target >= 0
    blocks = v_dense.reshape(6, 16, 8, 16).any(axis=(1, 3))
    np.testing.assert_array_equal(blocks, v_dense.reshape(6, 16, 8, 16).all(axis=(1, 3)))
    again = split_validation([dense, sparse], 0.25, seed=3, block=16)[1]
    assert all(np.array_equal(a.target, b.target) for a, b in zip(val, again))


def test_split_validation_keeps_every_class_in_training():
    target = np.zeros((64, 64), np.int64)
    target[20:24, 40:44] = 1  # a rare class inside one 16x16 block
    target[:8] = -1
    for seed in range(10):
        train, val = split_validation([item(target)], 0.5, seed=seed, block=16)
        assert (train[0].target == 1).sum() == 16 and (val[0].target == 1).sum() == 0
        assert 0.4 <= val[0].labeled_pixels / item(target).labeled_pixels <= 0.6


def test_split_validation_errors():
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_validation([item([[0, 1]])], 1.0)
    with pytest.raises(TrainingDataError, match="too few labeled pixels"):
        split_validation([item([[0, 1]])], 0.2, block=4)  # one block holding both classes
    with pytest.raises(TrainingDataError, match="too few labeled pixels"):
        split_validation([item(np.full((8, 8), -1))], 0.2, block=4)


def test_labeled_box_area():
    target = np.full((50, 60), -1)
    target[10:20, 5:8] = 0
    target[25, 30] = 1
    assert labeled_box_area([item(target), item(np.full((5, 5), -1))]) == 16 * 26


def test_patch_sampler_finds_a_small_painted_region_on_a_large_image():
    height, width = 2048, 3072
    target = np.full((height, width), -1, dtype=np.int64)
    target[2040:2048, 3000:3010] = 1  # at the image corner: patches must be clamped inside
    target[100:108, 50:60] = 0  # near the top-left corner
    position = np.arange(height * width, dtype=np.float32).reshape(1, height, width)  # exact in float32
    sampler = PatchSampler([LabeledImage(position, target)], 64, np.random.default_rng(1), augment=False)
    images, targets, weights = sampler.sample(32)
    assert weights is None  # no item has weights
    assert images.shape == (32, 1, 64, 64) and targets.shape == (32, 64, 64)
    assert images.dtype == np.float32 and targets.dtype == np.int64
    labels_seen = set()
    for patch, t in zip(images, targets):
        top, left = divmod(int(patch[0, 0, 0]), width)
        assert 0 <= top <= height - 64 and 0 <= left <= width - 64
        np.testing.assert_array_equal(patch[0], position[0, top : top + 64, left : left + 64])
        np.testing.assert_array_equal(t, target[top : top + 64, left : left + 64])
        assert (t >= 0).any()
        labels_seen.update(np.unique(t[t >= 0]).tolist())
    assert labels_seen == {0, 1}


def test_patch_sampler_augments_image_and_target_together_in_all_eight_orientations():
    size = 24
    index = np.arange(size * size, dtype=np.int64).reshape(size, size)
    target = index % 3 - 1  # some unlabeled pixels
    data = LabeledImage(index[None].astype(np.float32), target)
    sampler = PatchSampler([data], 8, np.random.default_rng(0), augment=True)
    images, targets, _ = sampler.sample(64)
    orientations = set()
    for patch, t in zip(images, targets):
        idx = patch[0].astype(np.int64)
        np.testing.assert_array_equal(t, idx % 3 - 1)
        orientations.add((int(idx[1, 0] - idx[0, 0]), int(idx[0, 1] - idx[0, 0])))
    assert orientations == {
        (dy, dx) for dy in (-size, size, -1, 1) for dx in (-size, size, -1, 1) if abs(dy) != abs(dx)
    }


def test_grid_crops_count_every_labeled_pixel_once():
    rng = np.random.default_rng(0)
    big = LabeledImage(rng.random((2, 100, 70), dtype=np.float32), rng.integers(-1, 3, (100, 70)))
    small = LabeledImage(rng.random((2, 20, 20), dtype=np.float32), np.zeros((20, 20), np.int64))
    empty = LabeledImage(np.zeros((2, 64, 64), np.float32), np.full((64, 64), -1))
    groups = grid_crops([big, small, empty], 32)
    shapes = sorted(images.shape for images, _ in groups)
    assert shapes == [(1, 2, 20, 20), (12, 2, 32, 32)]
    counted = sum(int((targets >= 0).sum()) for _, targets in groups)
    assert counted == big.labeled_pixels + small.labeled_pixels
    per_class = sum(np.bincount(targets[targets >= 0], minlength=3) for _, targets in groups)
    expected = np.bincount(big.target[big.target >= 0], minlength=3) + np.array([400, 0, 0])
    np.testing.assert_array_equal(per_class, expected)
    images, targets = next(g for g in groups if g[0].shape[-1] == 32)
    np.testing.assert_array_equal(images[0], big.image[:, :32, :32])
    np.testing.assert_array_equal(images[-1], big.image[:, 68:, 38:])  # last crop shifted inside
