"""benchmarks/loop/rounds_report.py: the rounds table pairs every strategy with random strokes (a) and,
with ``--against``, with a chosen strategy."""


import pytest

pytest.importorskip("napari")  # the benchmark reads the Train dock's job (benchmarks/loop/scribbles.py)
from benchmarks.loop import rounds_report  # noqa: E402


def _case(offset: float) -> dict:
    """Three images, rounds 0-5; strategy q is ``offset`` below random strokes after round 0 and p
    one point above q (plus a little image-dependent noise, so intervals have a width)."""
    runs = {"a": {}, "q": {}, "p": {}}
    for image in range(3):
        for r in range(6):
            base = 0.6 + 0.01 * r + 0.001 * image
            runs["a"][(image, r)] = base
            runs["q"][(image, r)] = base - (offset + 0.002 * image if r else 0.0)
            runs["p"][(image, r)] = runs["q"][(image, r)] + (0.01 + 0.001 * image * r if r else 0.0)
    return runs


def test_the_report_pairs_each_strategy_with_random_strokes_and_the_chosen_one():
    variants = {"v": {("isbi2012-membrane", "very-low-light"): _case(0.02)}}
    lines = rounds_report.report(variants, against="q")
    table = ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:5])
    rows = {cells[2][:3]: cells for cells in table}  # (a), (q), (p)
    assert rows["(q)"][-3] == "none" and rows["(q)"][-2].startswith("-2.2 [") and rows["(q)"][-1] == ""
    assert rows["(p)"][-2].startswith("-0.9 [") and rows["(p)"][-1].startswith("+1.3 [")
    assert "(n=15)" in rows["(p)"][-1] and rows["(a)"][-1].startswith("+2.2 [")
    assert lines[0].count("|") == rounds_report.report(variants)[0].count("|") + 1  # only on request
