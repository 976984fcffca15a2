"""scripts/screenshots.py: the strokes it paints look like a person's, and lie inside their class."""

import numpy as np
from scipy import ndimage

from scripts.screenshots import correction_strokes, painted_strokes


def two_classes(size: int = 128) -> np.ndarray:
    """A round colony (class 1) on background (class 0)."""
    rows, cols = np.mgrid[:size, :size]
    return ((rows - size / 2) ** 2 + (cols - size / 3) ** 2 < (size / 3) ** 2).astype(np.uint8)


def test_a_few_strokes_inside_their_class_not_a_grid():
    mask = two_classes()
    painted = painted_strokes(mask, total=6, seed=0)
    on = painted > 0
    assert (painted[on] == mask[on] + 1).all()  # painted value = class + 1, always the true class
    assert set(np.unique(painted[on])) == {1, 2}  # both classes
    assert 0.01 < on.mean() < 0.2  # a few strokes, not a fill
    assert ndimage.label(on)[1] <= 6  # one piece per stroke at most
    assert not any(on[row].all() for row in range(mask.shape[0]))  # no line across the image
    np.testing.assert_array_equal(painted, painted_strokes(mask, total=6, seed=0))  # repeatable


def test_corrections_start_on_the_errors_in_the_square_and_paint_the_truth():
    mask = two_classes()
    predicted = ndimage.binary_erosion(mask, iterations=8).astype(np.uint8)  # the colony's rim missed
    square = np.zeros(mask.shape, bool)
    square[40:104, 0:64] = True
    wrong = square & (predicted != mask)
    painted = correction_strokes(mask, wrong, square, total=4, seed=0)
    on = painted > 0
    assert (painted[on] == mask[on] + 1).all()
    on_errors = (on & wrong).sum() / on.sum()
    assert on_errors > 3 * wrong.mean()  # drawn to the errors, far more than strokes at random
    assert (on & square).any()
