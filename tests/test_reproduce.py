"""benchmarks/reproduce.py: the plan, the scheduler's dependency order, and the report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from napari_cellprep.engine.training import initial_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["reproduce"]


def fake_result(run, miou: float = 0.5, weights=(0.2, 0.3, 0.5)) -> dict:
    s = len(weights)
    return {
        "run": run.key, "dataset": run.dataset, "condition": run.condition, "fold": run.fold,
        "method": run.method + (f"@time-of-{run.time_of}" if run.time_of else ""),
        "test": {"iou": [miou, miou], "dice": [miou, miou], "miou": miou, "mdice": miou,
                 "branch_miou": [miou] * s},
        "train_seconds": 1.0, "epochs_run": 1, "best_epoch": 1, "best_val_miou": miou,
        "ensemble_weights": list(weights), "initial_ensemble_weights": [1 / s] * s,
    }


def test_cpu_plan_repeats_equal_init_wherever_the_paper_cellprep_runs(reproduce):
    preset = reproduce.PRESETS["cpu"]
    keys = [r.key for r in preset.runs + preset.candidates]
    assert len(keys) == len(set(keys))
    assert {r.method for r in preset.runs} == set(reproduce.PAPER_METHODS)
    paper = {(r.dataset, r.condition, r.fold) for r in preset.runs if r.method == "cellprep" and not r.time_of}
    equal = {(r.dataset, r.condition, r.fold) for r in preset.candidates if r.method == "cellprep-equal"}
    assert paper == equal and len(paper) == 14
    assert preset.jobs == 2


def test_runs_wait_for_the_runs_they_depend_on(reproduce, monkeypatch):
    Run = reproduce.Run
    warm = Run("nist-phase", "clean", 0, "cellprep-warm")
    timed = Run("nist-phase", "clean", 0, "unet", time_of="cellprep")
    todo = [warm, timed, Run("nist-phase", "clean", 0, "cellprep"), Run("nist-phase", "clean", 0, "unet")]
    order: list[str] = []

    def worker(run, preset_name, results, models_dir, seed, threads):
        assert all(k in results for k in reproduce.dependencies(run))
        order.append(run.key)
        return fake_result(run)

    monkeypatch.setattr(reproduce, "_worker", worker)
    results: dict = {}
    for run, result in reproduce.run_all(todo, "smoke", results, Path("unused"), 0, jobs=1, threads=None):
        results[run.key] = result
    assert order == [todo[2].key, todo[1].key, todo[3].key, todo[0].key]


def test_missing_dependency_is_named(reproduce, monkeypatch):
    monkeypatch.setattr(reproduce, "_worker", lambda run, *a: fake_result(run))
    warm = reproduce.Run("isbi2012-membrane", "clean", 1, "cellprep-warm")
    with pytest.raises(SystemExit, match="isbi2012-membrane/clean/fold1/unet"):
        list(reproduce.run_all([warm], "smoke", {}, Path("unused"), 0, jobs=1, threads=None))


def test_report_tables_and_gain_lines(reproduce, tmp_path):
    Run = reproduce.Run
    results = {}
    for fold, (u, c, e) in enumerate([(0.90, 0.85, 0.92), (0.80, 0.70, 0.85)]):
        for method, miou in (("unet", u), ("cellprep", c), ("cellprep-equal", e)):
            run = Run("nist-phase", "clean", fold, method)
            results[run.key] = fake_result(run, miou, (1.0,) if method == "unet" else (0.2, 0.3, 0.5))
    (tmp_path / "results.md").write_text("old tables\n## Reading these results\n\nkept by hand\n")
    reproduce.write_report(results, "cpu", reproduce.PRESETS["cpu"], tmp_path, "python benchmarks/reproduce.py")
    text = (tmp_path / "results.md").read_text()
    assert "old tables" not in text and text.endswith("## Reading these results\n\nkept by hand\n")
    assert "| cellprep-equal | 2 | 88.50 ± 3.50 |" in text
    assert "**77.50 ± 7.50**" in text  # cellprep mIoU over the two folds
    # U-Net 0.85 on average: cellprep −7.5 points = −50% of its error, equal init +3.5 points = +23.3%
    assert "`cellprep` − `unet` at equal epochs, folds [0, 1]: -7.50 mIoU points; share of U-Net's error (1 − mIoU) removed: -50.0%" in text
    assert "`cellprep-equal` − `unet` at equal epochs, folds [0, 1]: +3.50 mIoU points; share of U-Net's error (1 − mIoU) removed: +23.3%" in text
    assert "(0.33, 0.33, 0.33) → (0.20, 0.30, 0.50)" in text


def test_initial_weights_of_old_runs_are_rebuilt_from_the_seed(reproduce):
    preset = reproduce.PRESETS["cpu"]
    old = {"dataset": "isbi2012-membrane", "method": "cellprep", "fold": 1}
    expected = initial_model(reproduce.model_config("isbi2012-membrane", "cellprep", preset), 1)
    assert reproduce.initial_weights(old, preset) == expected.ensemble_parameters()[0].tolist()
    assert reproduce.initial_weights({**old, "method": "cellprep-warm"}, preset) is None
    assert reproduce.initial_weights({**old, "initial_ensemble_weights": [1.0]}, preset) == [1.0]
    assert reproduce.initial_weights({**old, "method": "unet"}, preset) == []
    json.dumps(reproduce.initial_weights(old, preset))  # stored in results.json as plain floats
