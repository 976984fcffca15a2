"""benchmarks/loop/variant_report.py: a fine-tuning variant against its baseline, case by case and paired
over the cases at each budget."""

import json

import pytest

from benchmarks.loop import variant_report  # noqa: E402


def _finetune(scores: dict[str, float | None], steps: int) -> dict:
    preview = {b: {"t": float(b), "miou": s} for b, s in scores.items() if s is not None}
    return {"finetune": {"preview": preview, "steps": steps, "first_preview": 1.5}}


def test_the_variant_is_paired_with_its_baseline_case_by_case(tmp_path):
    cases = {}
    for i, (old, new) in enumerate([(0.50, 0.55), (0.60, 0.62), (0.40, 0.47)]):
        cases[f"budgets+old/vnc-em/clean/{i}"] = _finetune({"5.0": None, "30.0": old}, 100)
        cases[f"budgets/vnc-em/clean/{i}"] = _finetune({"5.0": 0.1, "30.0": new}, 200)
    cases["budgets/vnc-em/clean/9"] = _finetune({"30.0": 0.9}, 200)  # no baseline: left out
    path = tmp_path / "runs.json"
    commands = [{"command": "python -m benchmarks.loop.scribbles …"}]
    path.write_text(json.dumps({"commands": commands, "cases": cases}))
    out = tmp_path / "report.md"
    assert variant_report.main([str(path), "--tag", "", "--base-tag", "old", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Variant `untagged` against `old`") and "image 9" not in text
    assert "| 30 s | 3 | +4.7 | [-1.6, +10.9] | not distinguishable |" in text  # +5, +2, +7 points
    assert "| 5 s | 0 | – | – | – |" in text  # the baseline showed nothing by 5 s
    assert "| vnc-em, clean, image 0 | old | 1.5 | 100 | – | 0.500 |" in text
    with pytest.raises(SystemExit):
        variant_report.main([str(path), "--tag", "nothing"])
