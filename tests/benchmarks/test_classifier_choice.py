"""The classifier-choice benchmark's report: paired differences, verdicts and timing ratios."""

from benchmarks.loop.classifier_choice import report


def _case(anchor: float, forest: float, shape=(512, 512)) -> dict:
    timing = {"fit_s": 0.5, "predict_s": 0.5}
    return {"shape": list(shape), "features_s": 0.2,
            "anchor": {"miou": anchor, "features_s": 1.0, **timing},
            "forest": {"miou": forest, "ratio_to_anchor": 1.0, **timing}}


def test_report_pairs_images_and_says_when_not_distinguishable():
    cases = {"isbi2012-membrane/clean/0": _case(0.70, 0.72), "isbi2012-membrane/clean/1": _case(0.60, 0.63),
             "isbi2012-membrane/clean/2": _case(0.65, 0.67), "vnc-em/clean/0": _case(0.5, 0.6),
             "vnc-em/clean/1": _case(0.5, 0.4)}
    results = {"command": "python -m benchmarks.loop.classifier_choice", "machine": "x", "torch": "2",
               "omp_wait_policy": "PASSIVE", "git_head": "abc", "candidates": ["forest"], "cases": cases}
    text = "\n".join(report(results))
    assert "| isbi2012-membrane | clean | 3 | 0.650 | 0.673 |" in text
    isbi = next(line for line in text.splitlines() if line.startswith("| isbi2012-membrane | clean | +"))
    assert isbi.startswith("| isbi2012-membrane | clean | +2.3 [") and "not distinguishable" not in isbi
    vnc = next(line for line in text.splitlines() if line.startswith("| vnc-em | clean | +"))
    assert "not distinguishable" in vnc
    assert "| forest | 0.200 | 0.500 | 0.500 | 1.000 | 1.00 |" in text
