import math

import numpy as np
import pytest

from napari_cellprep.engine.images.metrics import Scores, confusion_matrix, kfold_splits, scores


def test_confusion_matrix_counts_rows_truth_columns_prediction_and_skips_ignored():
    target = np.array([[0, 0, 1], [1, -1, 2]])
    pred = np.array([[0, 1, 1], [2, 2, 2]])
    cm = confusion_matrix(pred, target, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert cm.dtype == np.int64


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="does not match"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="target holds class 2"):
        confusion_matrix(np.zeros(3, int), np.array([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="prediction holds class 5"):
        confusion_matrix(np.array([0, 5, 1]), np.array([0, 1, -1]), 2)


def test_scores_on_hand_made_matrix():
    cm = np.array(
        [
            [5, 1, 0, 0],  # class 0: tp 5, fn 1, fp 2
            [2, 3, 1, 0],  # class 1: tp 3, fn 3, fp 1
            [0, 0, 0, 0],  # class 2: predicted once, never true -> IoU 0
            [0, 0, 0, 0],  # class 3: absent everywhere -> NaN, excluded from the means
        ]
    )
    s = scores(cm)
    assert s.iou[:3] == pytest.approx([5 / 8, 3 / 7, 0.0])
    assert s.dice[:3] == pytest.approx([10 / 13, 6 / 10, 0.0])
    assert math.isnan(s.iou[3]) and math.isnan(s.dice[3])
    assert s.miou == pytest.approx((5 / 8 + 3 / 7) / 3)
    assert s.mdice == pytest.approx((10 / 13 + 0.6) / 3)
    assert s.to_dict()["miou"] == s.miou


def test_scores_perfect_and_empty():
    assert scores(np.diag([4, 7])) == Scores([1.0, 1.0], [1.0, 1.0], 1.0, 1.0)
    assert math.isnan(scores(np.zeros((2, 2))).miou)
    with pytest.raises(ValueError, match="square"):
        scores(np.zeros((2, 3)))


def test_kfold_splits_cover_each_item_once():
    splits = kfold_splits(10, 3, seed=1)
    assert len(splits) == 3
    tested = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(np.sort(tested), np.arange(10))
    assert sorted(len(test) for _, test in splits) == [3, 3, 4]
    for train, test in splits:
        assert not set(train) & set(test)
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(10))
    again = kfold_splits(10, 3, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(splits, kfold_splits(10, 3, seed=2)))


@pytest.mark.parametrize("n, k", [(5, 1), (3, 4)])
def test_kfold_splits_reject_bad_k(n, k):
    with pytest.raises(ValueError, match="2 <= k"):
        kfold_splits(n, k)


def test_a_weighted_confusion_matrix_counts_each_pixel_by_its_weight():
    target, pred = np.array([0, 0, 1, -1]), np.array([0, 1, 1, 0])
    cm = confusion_matrix(pred, target, 2, weight=np.array([1.0, 10.0, 2.0, 5.0]))
    np.testing.assert_allclose(cm, [[1.0, 10.0], [0.0, 2.0]])  # the ignored pixel's weight left out
    with pytest.raises(ValueError, match="weights of shape"):
        confusion_matrix(pred, target, 2, weight=np.ones(3))
