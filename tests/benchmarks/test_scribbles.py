"""benchmarks/harness/strokes.py: the simulated annotator of benchmarks/loop/scribbles.py (strokes inside
their class, brush-wide, deterministic per seed) and its "paint here next" seed picker."""

import numpy as np
from scipy import ndimage as ndi

from benchmarks.harness import strokes as sim


def _mask() -> np.ndarray:
    """Three classes: background, a big disk, and a thin (5 px) band like a membrane."""
    rr, cc = np.mgrid[:128, :128]
    mask = np.zeros((128, 128), dtype=np.uint8)
    mask[(rr - 50) ** 2 + (cc - 60) ** 2 < 30**2] = 1
    mask[100:105, 10:120] = 2
    return mask


def test_strokes_lie_inside_their_class_and_are_brush_wide():
    mask = _mask()
    strokes = sim.add_strokes(mask, 12, np.random.default_rng(0), brush=3, length=20)
    assert [sum(s.cls == k for s in strokes) for k in range(3)] == [4, 4, 4]  # balanced
    core = sim.brush_footprint(3)
    for stroke in strokes:
        assert (mask[stroke.rows, stroke.cols] == stroke.cls).all()
        painted = np.zeros(mask.shape, bool)
        painted[stroke.rows, stroke.cols] = True
        centre = ndi.binary_erosion(painted, structure=core)
        assert centre.sum() >= 10  # a line of brush centres, about the stroke length
        assert np.array_equal(ndi.binary_dilation(centre, structure=core), painted)  # 3 px wide everywhere
    labels = sim.paint(strokes, mask.shape)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert (labels[labels > 0] - 1 == mask[labels > 0]).all()


def test_strokes_are_deterministic_per_seed():
    mask = _mask()
    a = sim.paint(sim.add_strokes(mask, 9, np.random.default_rng(3)), mask.shape)
    b = sim.paint(sim.add_strokes(mask, 9, np.random.default_rng(3)), mask.shape)
    c = sim.paint(sim.add_strokes(mask, 9, np.random.default_rng(4)), mask.shape)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_picker_goes_where_disagreement_is_highest():
    rr, cc = np.mgrid[:128, :128]
    score = 0.1 * np.random.default_rng(0).random((128, 128))  # low background noise
    score[(rr - 90) ** 2 + (cc - 30) ** 2 < 8**2] = 0.9  # the most uncertain region
    score[(rr - 20) ** 2 + (cc - 100) ** 2 < 8**2] = 0.6  # the second
    allowed = np.ones(score.shape, bool)
    seeds = sim.pick_seeds(score, allowed, 2, min_distance=15)
    assert (seeds[0][0] - 90) ** 2 + (seeds[0][1] - 30) ** 2 < 8**2
    assert (seeds[1][0] - 20) ** 2 + (seeds[1][1] - 100) ** 2 < 8**2
    # strokes seeded by the map start inside the region of highest disagreement (of their class)
    mask = np.zeros((128, 128), np.uint8)
    mask[:, 64:] = 1
    strokes = sim.add_strokes(mask, 2, np.random.default_rng(0), score=score, length=6)
    first = {s.cls: (s.rows, s.cols) for s in strokes}
    rows, cols = first[0]
    assert (((rows - 90) ** 2 + (cols - 30) ** 2) < 12**2).mean() > 0.8
    rows, cols = first[1]
    assert (((rows - 20) ** 2 + (cols - 100) ** 2) < 12**2).mean() > 0.8


def test_sampled_seeds_follow_the_map_spread_out_and_stay_within_the_cue():
    score = np.zeros((128, 128))
    score[:, :32] = 1.0  # hot strip on the left, cold elsewhere
    allowed = np.ones(score.shape, bool)
    seeds = sim.sample_seeds(score, allowed, 6, min_distance=10, rng=np.random.default_rng(0), smooth=0)
    assert len(seeds) == 6 and all(c < 32 for _, c in seeds)  # only where the score is positive
    gaps = [np.hypot(a[0] - b[0], a[1] - b[1]) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    assert min(gaps) >= 10
    # not the greedy maxima: another generator draws other seeds from the same map
    again = sim.sample_seeds(score, allowed, 6, min_distance=10, rng=np.random.default_rng(1), smooth=0)
    assert set(again) != set(seeds)
    # restricted to the cue's squares where the class has room there
    mask = np.zeros((128, 128), np.uint8)
    mask[:, 64:] = 1
    within = np.zeros(mask.shape, bool)
    within[90:128, 40:100] = True
    strokes = sim.add_strokes(mask, 6, np.random.default_rng(0), score=np.ones(mask.shape), length=4,
                              sample=True, within=within)
    assert [s.cls for s in strokes] == [0, 0, 0, 1, 1, 1]
    for stroke in strokes:
        assert (mask[stroke.rows, stroke.cols] == stroke.cls).all()
        assert np.mean(stroke.rows >= 84) > 0.5 and np.mean((stroke.cols >= 34) & (stroke.cols < 106)) > 0.5


def test_new_strokes_avoid_painted_pixels():
    mask = _mask()
    first = sim.paint(sim.add_strokes(mask, 30, np.random.default_rng(0)), mask.shape)
    more = sim.add_strokes(mask, 6, np.random.default_rng(1), painted=first)
    seeds_free = [not first[s.rows, s.cols].all() for s in more]
    assert all(seeds_free)
