"""benchmarks/loop/preview_stability.py: each epoch is scored by the preview on screen at its end."""


import pytest

pytest.importorskip("napari")  # the benchmark runs the Train dock's job (benchmarks/loop/scribbles.py)
from benchmarks.loop import preview_stability


def test_every_epoch_previewed_is_scored_as_shown():
    previews = [{"epoch": e, "miou": 0.5 + 0.1 * e} for e in range(4)]  # epoch 0: the adapted start
    assert preview_stability.on_screen(previews, 3) == pytest.approx([0.6, 0.7, 0.8])


def test_an_epoch_without_a_preview_keeps_the_one_shown_before():
    previews = [{"epoch": 2, "miou": 0.7}, {"epoch": 0, "miou": 0.4}, {"epoch": 5, "miou": 0.9}]
    assert preview_stability.on_screen(previews, 6) == pytest.approx([0.4, 0.7, 0.7, 0.7, 0.9, 0.9])


def test_nothing_is_scored_before_the_first_preview():
    assert preview_stability.on_screen([{"epoch": 3, "miou": 0.8}], 4) == pytest.approx([0.8, 0.8])
