"""benchmarks/paper/reproduce.py: the plans, compute budgets, paired statistics and the report."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.harness import datasets, report, stats

REPO = Path(__file__).resolve().parents[2]


def _benchmark(name: str):
    """The module ``benchmarks.paper.<name>``."""
    return importlib.import_module(f"benchmarks.paper.{name}")


@pytest.fixture(scope="module")
def reproduce():
    yield _benchmark("reproduce")


def random_items(n: int) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``n`` (image, mask, name) triples as ``datasets.load_dataset`` gives them: random 32² images
    with random two-class masks."""
    rng = np.random.default_rng(0)
    return [
        (rng.random((32, 32)).astype(np.float32), rng.integers(0, 2, (32, 32)), f"im{i}") for i in range(n)
    ]


def tiny_preset(reproduce, monkeypatch, name: str, epochs: int):
    """``reproduce.PRESETS[name]`` with tiny networks, ``epochs`` epochs of 2 steps on 9 random images."""
    monkeypatch.setattr(reproduce, "load_dataset", lambda dataset, condition: random_items(9))
    preset = reproduce.PRESETS[name]
    tiny = dataclasses.replace(
        preset,
        width=4,
        depth=2,
        batch_size=2,
        patch_size=32,
        epochs=dict.fromkeys(preset.epochs, epochs),
        steps_per_epoch=dict.fromkeys(preset.epochs, 2),
    )
    monkeypatch.setitem(reproduce.PRESETS, name, tiny)
    return tiny


def fake_result(run, miou: float = 0.5, weights=(0.2, 0.3, 0.5), best_epoch: int = 5) -> dict:
    s = len(weights)
    return {
        "run": run.key,
        "dataset": run.dataset,
        "condition": run.condition,
        "fold": run.fold,
        "seed": run.seed,
        "method": run.label,
        "test": {
            "iou": [miou, miou],
            "dice": [miou, miou],
            "miou": miou,
            "mdice": miou,
            "branch_miou": [miou] * s,
        },
        "train_seconds": 1.0,
        "epochs": 20,
        "epochs_run": 20,
        "best_epoch": best_epoch,
        "best_val_miou": miou,
        "step_gflop": 1.0,
        "train_pflop": 0.001,
        "ensemble_weights": list(weights),
        "initial_ensemble_weights": [1 / s] * s,
    }


def test_headline_plan_is_three_cells_by_three_folds_by_three_seeds(reproduce):
    plan = reproduce.PRESETS["cpu"].plans["headline"]
    keys = [r.key for r in plan]
    assert len(keys) == len(set(keys)) == 3 * 3 * 3 * 4
    assert {(r.dataset, r.condition) for r in plan} == set(reproduce.HEADLINE_CELLS)
    assert {(r.fold, r.seed) for r in plan} == {(f, s) for f in range(3) for s in range(3)}
    assert {r.label for r in plan} == {
        "unet",
        "cellprep",
        "cellprep-product",
        "unet@flops-of-cellprep-product",
    }
    screen = reproduce.PRESETS["cpu"].plans["screen"]
    assert {r.method for r in screen} >= set(reproduce.SINGLE_CHANGES)
    assert screen[0].seed == 0 and screen[-1].seed == 1  # seed 0 of every arm first


def test_the_split_does_not_depend_on_the_seed_and_the_paper_method_is_the_paper(reproduce):
    train, val, test = datasets.split(100, 3, 1)
    assert (
        not set(train) & set(test) and not set(val) & set(test) and len(train) + len(val) + len(test) == 100
    )
    config = reproduce.model_config("nist-phase", "cellprep", reproduce.PRESETS["cpu"])
    assert all(getattr(config, k) == v for k, v in reproduce.PAPER.items())


def test_equal_compute_counts_training_flops(reproduce):
    preset = reproduce.PRESETS["smoke"]
    unet = reproduce.train_step_flops(reproduce.model_config("nist-phase", "unet", preset), 2, 32)
    cellprep = reproduce.train_step_flops(reproduce.model_config("nist-phase", "cellprep", preset), 2, 32)
    assert 2.5 < cellprep / unet < 4  # network 1 + network 2 on C = 2 translated images
    for method in ("unet", "cellprep", "cellprep-product"):  # counted on one patch, scaled to the batch
        config = reproduce.model_config("nist-phase", method, preset)
        assert reproduce.train_step_flops(config, 3, 32) == reproduce.counted_step_flops(config, 3, 32)


def test_the_narrow_combination_costs_about_a_unet_step_and_is_paired_with_the_combination(reproduce):
    cpu = reproduce.PRESETS["cpu"]
    configs = {m: reproduce.model_config("nist-phase", m, cpu) for m in ("unet", "cellprep-product")}
    configs["narrow"] = reproduce.model_config("nist-phase", reproduce.NARROW_METHOD, cpu)
    assert (configs["unet"].width, configs["cellprep-product"].width, configs["narrow"].width) == (8, 8, 4)
    flops = {m: reproduce.train_step_flops(c, 1, 64) for m, c in configs.items()}
    assert 1.0 < flops["narrow"] / flops["unet"] < 1.1 and flops["cellprep-product"] / flops["unet"] > 4
    assert reproduce._paper_baseline(reproduce.NARROW_METHOD) == reproduce.PRODUCT_METHOD


def test_paired_difference_and_its_interval(reproduce):
    a = {(0, 0): 0.80, (1, 0): 0.82, (2, 0): 0.84}
    b = {(0, 0): 0.78, (1, 0): 0.80, (2, 0): 0.82, (3, 0): 0.5}  # (3, 0) has no pair
    mean, low, high, n = stats.paired_difference(a, b)
    assert n == 3 and mean == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)
    mean, low, high, n = stats.paired_difference({(0, 0): 0.8, (1, 0): 0.7}, {(0, 0): 0.7, (1, 0): 0.8})
    # differences +10 and −10 points: mean 0, half width t(0.975, 1) · 14.14 / √2 = 12.706 · 10
    assert (
        mean == pytest.approx(0) and high == pytest.approx(127.06, abs=0.01) and low == pytest.approx(-high)
    )
    assert stats.paired_difference({(0, 0): 0.8}, {(0, 0): 0.7}) is None


def test_report_tables_and_paired_verdicts(reproduce, tmp_path):
    Run = reproduce.Run
    results = {}
    for fold in range(3):
        for method, miou in (
            ("unet", 0.80 + fold / 100),
            ("cellprep", 0.78 + fold / 100 + (fold == 1) / 50),
            ("cellprep-product", 0.83 + fold / 100),
            ("unet@flops-of-cellprep-product", 0.85 + fold / 100 - (fold == 2) / 100),
        ):
            run = Run("nist-phase", "low-light", fold, 0, method)
            results[run.key] = fake_result(
                run,
                miou,
                (1.0,) if method == "unet" else (0.2, 0.3, 0.5),
                best_epoch=20 if method == "unet" else 5,
            )
    (tmp_path / "results.md").write_text("old tables\n## Reading these results\n\nkept by hand\n")
    reproduce.write_report(
        results, "cpu", reproduce.PRESETS["cpu"], tmp_path, "python -m benchmarks.paper.reproduce"
    )
    text = (tmp_path / "results.md").read_text()
    assert "old tables" not in text and text.endswith("## Reading these results\n\nkept by hand\n")
    assert "| cellprep-product | 3 | 84.00 ± 1.00 | 84.00 ± 1.00 | **84.00 ± 1.00** |" in text
    assert "| 20 | 3/3 |" in text  # U-Net's best epochs all in the last tenth
    assert "| cellprep-product | 3 | +3.00 | [+3.00, +3.00] | better |" in text
    assert "| cellprep | 3 | -1.33 |" in text and "not distinguishable |" in text
    equal = text[text.index("At equal compute") :]  # the product against U-Net given its FLOPs: −2, −2, −1
    assert "| cellprep-product | 3 | -1.67 |" in equal and "| cellprep | " not in equal.split("\n\n")[1]
    # each change against the paper's CellPrep: 0.05, 0.03, 0.05
    change = text[text.index("Each change against what it changes") :].split("\n## ")[0]
    assert "| cellprep-product | 3 | +4.33 |" in change and "| cellprep | " not in change
    assert "| unet@flops" not in change


def test_variant_report_pairs_the_variant_with_the_stored_runs(reproduce, tmp_path):
    variant = _benchmark("reproduce_variant")
    assert variant.swing([0.1, 0.2, 0.3, 0.4, 0.8, 0.6, 0.9]) == pytest.approx(0.25)  # |−0.2|, |+0.3|
    curve = [0.5] * 20
    runs = {
        f"cell/fold{f}/seed0/unet": {
            "stored": variant.summary(
                {"test": {"miou": 0.80 + f / 100}, "best_epoch": 9, "curves": {"val_miou": curve}}
            ),
            "variant": variant.summary(
                {"test": {"miou": 0.82 + f / 100}, "best_epoch": 19, "curves": {"val_miou": curve}}
            ),
        }
        for f in range(3)
    }
    text = "\n".join(variant.report(runs, {"refresh_norm": True}, "cmd"))
    assert "| cell/fold1/seed0/unet | 0.8100 | 0.8300 | 9 | 19 | 0.000 | 0.000 |" in text
    assert "| variant − stored | 3 | +2.00 | [+2.00, +2.00] | better |" in text
    stored = {f"cell/fold{f}/seed0/cellprep": {"test": {"miou": 0.85 - f / 100}} for f in range(2)}
    others = variant.against(runs, stored, ["cellprep", "attention-unet"])
    assert others == {
        "cellprep": {"cell/fold0/seed0/unet": 0.85, "cell/fold1/seed0/unet": 0.84},
        "attention-unet": {},
    }
    text = "\n".join(variant.report(runs, {"refresh_norm": True}, "cmd", others))
    assert "| variant − cellprep | 2 | -2.00 | [-14.71, +10.71] | not distinguishable |" in text  # −3, −1
    assert "attention-unet" not in text  # no pairs, no row
    with pytest.raises(SystemExit):
        variant.main(["no/such/run", "--set", "refresh_norm=true", "--out", str(tmp_path / "v.json")])


def test_a_variant_runs_with_the_stored_runs_settings_and_thread_count(reproduce, tmp_path, monkeypatch):
    variant = _benchmark("reproduce_variant")
    run = reproduce.Run("nist-phase", "clean", 1, 0, "cellprep-product")
    stored = fake_result(run, 0.80) | {"torch_threads": 1, "curves": {"val_miou": [0.5] * 20}}
    (tmp_path / "results.json").write_text(json.dumps({"runs": {run.key: stored}}))
    seen = {}

    def execute(r, preset, models):
        seen.update(
            run=r,
            threads=torch.get_num_threads(),
            training=dict(variant.reproduce.TRAINING[r.method]),
            model=variant.reproduce.model_config(r.dataset, r.method, preset),
            models=models,
        )
        return fake_result(r, 0.83) | {"curves": {"val_miou": [0.6] * 20}}

    monkeypatch.setattr(variant.reproduce, "execute", execute)
    monkeypatch.setitem(variant.reproduce.TRAINING, run.method, {})
    monkeypatch.setitem(variant.reproduce.METHODS, run.method, dict(variant.reproduce.METHODS[run.method]))
    monkeypatch.setattr(variant.datasets, "REPO", tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = tmp_path / "v.json"
        argv = [run.key, "--set", "filter_decorrelation=1", "penultimate=8", "upsample=transpose"]
        assert variant.main([*argv, "--results", str(tmp_path / "results.json"), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert (seen["run"], seen["threads"], seen["training"]) == (run, 1, {"filter_decorrelation": 1})
    assert (seen["model"].penultimate, seen["model"].upsample) == (8, "transpose")
    assert seen["model"].ensemble == "softmax"  # the product's own settings stay
    assert seen["models"] == tmp_path / "runs" / "variants" / "v" and seen["models"].is_dir()
    saved = json.loads(out.read_text())["runs"][run.key]
    assert (saved["stored"]["test"], saved["variant"]["test"]) == (0.80, 0.83)
    assert saved["variant"]["iou"] == [0.83, 0.83] and saved["variant"]["branch_miou"] == [0.83] * 3
    argv += ["--results", str(tmp_path / "results.json"), "--out", str(out)]
    assert variant.main([*argv, "--against", "cellprep-product"]) == 0  # nothing trains again
    assert json.loads(out.read_text())["against"] == {"cellprep-product": {run.key: 0.80}}
    other = reproduce.Run("nist-phase", "clean", 2, 0, "cellprep-product")
    stored_runs = {
        run.key: stored,
        other.key: fake_result(other, 0.78) | {"torch_threads": 1, "curves": stored["curves"]},
    }
    (tmp_path / "results.json").write_text(json.dumps({"runs": stored_runs}))
    with pytest.raises(SystemExit):  # another setting would be filed under this one's runs
        variant.main([other.key, run.key, "--set", "penultimate=16", *argv[5:]])
    assert variant.main([other.key, *argv]) == 0  # a later run without --against keeps the pairing
    saved = json.loads(out.read_text())
    assert saved["against"] == {"cellprep-product": {run.key: 0.80, other.key: 0.78}}
    assert (saved["runs"][run.key]["variant"]["test"], saved["runs"][other.key]["variant"]["test"]) == (
        0.83,
        0.83,
    )
    assert variant.main([other.key, *argv, "--against"]) == 0  # no names: the pairings are cleared
    saved = json.loads(out.read_text())
    assert saved["against"] == {} and set(saved["runs"]) == {run.key, other.key}


def test_variant_settings_are_split_into_model_and_training_and_unknown_names_refused(reproduce, tmp_path):
    model, training = reproduce.split_settings({"upsample": "resize", "seed": 3, "norm": "group"})
    assert (model, training) == ({"upsample": "resize", "norm": "group"}, {"seed": 3})
    with pytest.raises(ValueError, match=r"\['upsampel'\] are settings of neither"):
        reproduce.split_settings({"upsampel": "resize"})
    variant = _benchmark("reproduce_variant")
    run = reproduce.Run("nist-phase", "clean", 1, 0, "cellprep")
    (tmp_path / "results.json").write_text(json.dumps({"runs": {run.key: fake_result(run, 0.8)}}))
    argv = [run.key, "--set", "upsampel=resize", "--results", str(tmp_path / "results.json")]
    with pytest.raises(SystemExit):
        variant.main([*argv, "--out", str(tmp_path / "v.json")])
    assert not (tmp_path / "v.json").exists()


def test_the_screen_is_pooled_over_its_cells_and_seeds(reproduce, tmp_path):
    results = {}
    for run in reproduce.PRESETS["cpu"].plans["screen"]:
        if run.method in ("cellprep", "cellprep-p16", "cellprep-group"):
            gain = {"cellprep": 0.0, "cellprep-p16": 0.02 + run.seed / 100, "cellprep-group": -0.01}[
                run.method
            ]
            results[run.key] = fake_result(run, 0.7 + gain)
    reproduce.write_report(results, "cpu", reproduce.PRESETS["cpu"], tmp_path, "cmd")
    text = (tmp_path / "results.md").read_text()
    pooled = text.split("## The screen, pooled")[1].split("## Every change over every set")[0]
    p16, group = (
        pooled.index("| cellprep-p16 − cellprep | 2 | 4 | +2.50 |"),
        pooled.index("| cellprep-group − cellprep | 2 | 4 | -1.00 |"),
    )
    assert p16 < group  # best mean first
    assert "cellprep-softmax" not in pooled  # no runs, no row


def test_every_change_is_pooled_over_every_set_fold_and_seed(reproduce, tmp_path):
    results = {}
    screen = [r for r in reproduce.PRESETS["cpu"].plans["screen"] if r.method in ("cellprep", "cellprep-p16")]
    grid = [
        reproduce.Run("nist-phase", "clean", fold, 0, m)
        for fold in (1, 2)
        for m in ("cellprep", "cellprep-p16")
    ]
    for run in screen + grid:
        gain = (0.04 if run in grid else 0.01) if run.method == "cellprep-p16" else 0.0
        results[run.key] = fake_result(run, 0.7 + gain)
    results["stray/cellprep-p16"] = fake_result(grid[1], 0.9) | {"dataset": "isbi2012-membrane", "fold": 5}
    reproduce.write_report(results, "cpu", reproduce.PRESETS["cpu"], tmp_path, "cmd")
    text = (tmp_path / "results.md").read_text()
    screen_table = text.split("## The screen, pooled")[1].split("## Every change over every set")[0]
    every = text.split("## Every change over every set, pooled")[1].split("## The ensemble")[0]
    assert "| cellprep-p16 − cellprep | 2 | 4 | +1.00 | [+1.00, +1.00] | better |" in screen_table
    # 4 screen pairs at +1 and 2 nist-phase clean pairs at +4; the stray p16 run has no cellprep to pair with
    assert "| cellprep-p16 − cellprep | 3 | 6 | +2.00 |" in every


def test_a_retired_method_no_longer_runs_but_its_stored_runs_stay_in_the_report(reproduce, tmp_path):
    planned = {r.method for plan in reproduce.PRESETS["cpu"].plans.values() for r in plan}
    assert "cellprep-n2v" in reproduce.RETIRED and "cellprep-n2v" not in planned | set(reproduce.METHODS)
    results = {}
    for seed in (0, 1):
        for run in reproduce._screened([reproduce.PRODUCT_METHOD, "cellprep-n2v"], seed):
            results[run.key] = fake_result(run, 0.8 - (0.05 if run.method == "cellprep-n2v" else 0.0))
    reproduce.write_report(results, "cpu", reproduce.PRESETS["cpu"], tmp_path, "cmd")
    text = (tmp_path / "results.md").read_text()
    row = "| cellprep-n2v − cellprep-product | 2 | 4 | -5.00 | [-5.00, -5.00] | worse |"
    screen, every = text.split("## The screen, pooled")[1].split("## Every change over every set")
    assert row in screen and row in every


def test_the_full_plan_runs_every_change_on_every_fold_of_every_set(reproduce, tmp_path):
    full = reproduce.PRESETS["cpu"].plans["full"]
    keys = [r.key for r in full]
    assert len(keys) == len(set(keys))
    assert [r.key for r in full[:108]] == [r.key for r in reproduce.PRESETS["cpu"].plans["headline"]]
    for d, c in reproduce.SETS:
        for method in reproduce.GRID_METHODS:
            folds = {r.fold for r in full if (r.dataset, r.condition, r.method) == (d, c, method)}
            assert folds == set(range(reproduce.FOLDS[d])), (d, c, method)
    # split-batch on vnc-em: seed 0 in the grid, seeds 1 and 2 beside the core arms
    split = [(r.fold, r.seed) for r in full if (r.dataset, r.method) == ("vnc-em", "cellprep-split-batch")]
    assert sorted(split) == [(fold, seed) for fold in range(4) for seed in range(3)]
    narrow = [r for r in full if reproduce.NARROW_METHOD in r.label]
    assert full[-len(narrow) :] == narrow and len(narrow) == 2 * 3 * 3 * len(reproduce.HEADLINE_CELLS)
    for seeds in ([r.seed for r in full[108 : -len(narrow)]], [r.seed for r in narrow]):
        assert seeds == sorted(seeds)  # seed 0 of every set and change before seed 1 of anything
    done = {r.key: fake_result(r) for r in full if r.dataset == "isbi2012-membrane"}
    done |= {r.key: fake_result(r) for r in full[:3] if r.dataset == "nist-phase"}
    reproduce.write_report(done, "cpu", reproduce.PRESETS["cpu"], tmp_path, "cmd")
    coverage = (tmp_path / "results.md").read_text().split("## Still to run")[1]
    assert "| isbi2012-membrane clean | 84/84 | none |" in coverage and "| vnc-em clean | 0/96 |" in coverage
    # full[:3] is fold 0, seed 0 of U-Net, the paper's CellPrep and the product at low light
    assert "| nist-phase low-light | 3/84 | unet 1/9, cellprep 1/9, cellprep-product 1/9, unet@" in coverage


def test_the_gpu_plan_trains_its_three_arms_and_reports_its_own_progress(reproduce, tmp_path, monkeypatch):
    """The paper's-budget plan with tiny networks on fold 0: U-Net at the CellPrep's FLOPs trains
    for more epochs, and the report counts ``--plan gpu`` and names where the runs were made."""
    tiny_preset(reproduce, monkeypatch, "gpu-300", epochs=1)
    out, models = tmp_path / "gpu-300", tmp_path / "models"
    argv = ["--preset", "gpu-300", "--plan", "gpu", "--out", str(out), "--models", str(models)]
    assert reproduce.main([*argv, "--only", "fold0", "--jobs", "1"]) == 0
    runs = {r["method"]: r for r in json.loads((out / "results.json").read_text())["runs"].values()}
    assert sorted(runs) == ["cellprep", "unet", "unet@flops-of-cellprep"]
    unet, cellprep, matched = runs["unet"], runs["cellprep"], runs["unet@flops-of-cellprep"]
    assert unet["epochs"] == cellprep["epochs"] == 1 < matched["epochs"]
    assert abs(matched["train_pflop"] - cellprep["train_pflop"]) <= unet["train_pflop"]  # within an epoch
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    assert {r["provenance"]["gpu"] for r in runs.values()} == {gpu_name}
    assert len(list(models.glob("*.cellprep"))) == 3
    text = (out / "results.md").read_text()
    assert "Runs of `--plan gpu` made so far" in text
    assert "| nist-phase low-light | 3/9 | unet 1/3, cellprep 1/3, unet@flops-of-cellprep 1/3 |" in text
    assert f"torch {torch.__version__} (3 runs), one torch thread per run" in text
    assert "archive/results-v1.md" not in text  # no first protocol beside this report


@pytest.mark.skipif(torch.cuda.is_available(), reason="the script runs its plan where there is a GPU")
def test_the_gpu_script_refuses_to_train_without_a_gpu():
    script = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "paper" / "gpu_paper_budget.sh")],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        timeout=120,
    )
    assert script.returncode == 1 and script.stdout == ""
    assert "needs a CUDA GPU" in script.stderr and "--preset gpu-300 --plan gpu" in script.stderr


def test_the_ensemble_is_paired_with_its_best_branch_and_network_1s(reproduce, tmp_path):
    results = {}
    for i, run in enumerate(r for r in reproduce.PRESETS["cpu"].plans["headline"] if r.method == "cellprep"):
        if i < 3:
            r = fake_result(run, 0.80, weights=(0.5, 0.3, 0.2))
            r["test"]["branch_miou"] = [0.78 - i / 100, 0.82 + i / 100, 0.70]  # best branch 2, 3, 4 points up
            r["initial_ensemble_weights"] = [0.4, 0.3, 0.3]  # moved at most 0.1
            results[run.key] = r
    unet = next(r for r in reproduce.PRESETS["cpu"].plans["headline"] if r.method == "unet")
    results[unet.key] = fake_result(unet, 0.9, weights=(1.0,))  # one branch: not an ensemble
    reproduce.write_report(results, "cpu", reproduce.PRESETS["cpu"], tmp_path, "cmd")
    table = (tmp_path / "results.md").read_text().split("## The ensemble against its branches")[1]
    table = table.split("## Still to run")[0]
    row = next(line for line in table.splitlines() if line.startswith("| cellprep |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["cellprep", "3", "-3.00"] and cells[4] == "worse"
    assert cells[5] == "3/3"  # each run more than 1 point below its best branch
    assert cells[6] == "+3.00" and cells[8] == "better"  # network 1's branch: 0.78, 0.77, 0.76
    assert cells[9] == "0.10"
    assert "| unet |" not in table


def test_rescore_fills_the_per_class_scores_of_older_variant_runs_from_their_checkpoints(
    reproduce, tmp_path, monkeypatch
):
    from napari_cellprep.engine.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
    from napari_cellprep.model import ModelConfig, build_model

    variant = _benchmark("reproduce_variant")
    items = random_items(6)
    monkeypatch.setattr(variant.datasets, "load_dataset", lambda name, condition: items)
    run = reproduce.Run("nist-phase", "clean", 1, 0, "cellprep-product")
    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, width=4, depth=2)
    save_checkpoint(
        tmp_path / (run.key.replace("/", "_") + ".cellprep"),
        build_model(config).eval(),
        ModelInfo(config, ["a", "b"]),
    )
    stored = fake_result(run, 0.80) | {"curves": {"val_miou": [0.5] * 20}}
    (tmp_path / "results.json").write_text(json.dumps({"runs": {run.key: stored}}))
    older = {"stored": variant.summary(stored), "variant": variant.summary(stored)}
    del older["variant"]["iou"], older["variant"]["branch_miou"], older["stored"]["iou"]
    out = tmp_path / "v.json"
    out.write_text(
        json.dumps({"settings": {"seed": 1}, "command": "the run's command", "runs": {run.key: older}})
    )
    argv = [run.key, "--set", "seed=1", "--results", str(tmp_path / "results.json"), "--out", str(out)]
    assert variant.main([*argv, "--models", str(tmp_path), "--rescore"]) == 0
    saved = json.loads(out.read_text())
    _, _, test = datasets.split(6, 3, 1)
    expected = reproduce.evaluate(
        load_checkpoint(tmp_path / (run.key.replace("/", "_") + ".cellprep")), [items[i] for i in test], 2
    )
    assert saved["runs"][run.key]["variant"]["iou"] == pytest.approx(expected["iou"])
    assert saved["runs"][run.key]["variant"]["branch_miou"] == pytest.approx(expected["branch_miou"])
    assert saved["runs"][run.key]["stored"]["iou"] == [0.80, 0.80] and saved["command"] == "the run's command"
    assert "--rescore" in saved["rescored_by"] and "| 80.0, 80.0 |" in out.with_suffix(".md").read_text()
    out.write_text(
        json.dumps({"settings": {"seed": 1}, "command": "the run's command", "runs": {run.key: older}})
    )
    with pytest.raises(SystemExit, match="no checkpoint"):
        variant.main([*argv, "--models", str(tmp_path / "elsewhere"), "--rescore"])


def test_split_scores_scores_a_saved_run_on_its_own_validation_and_test_split(
    reproduce, tmp_path, monkeypatch, capsys
):
    from napari_cellprep.engine.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
    from napari_cellprep.model import ModelConfig, build_model

    split_scores = _benchmark("split_scores")
    items = random_items(12)
    monkeypatch.setattr(split_scores, "load_dataset", lambda name, condition: items)
    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, width=4, depth=2)
    path = save_checkpoint(
        tmp_path / "m.cellprep",
        build_model(config).eval(),
        ModelInfo(config, ["a", "b"], name="nist-phase/clean/fold1/seed0/x"),
    )
    scores = split_scores.split_scores(path)
    _, val, test = datasets.split(12, 3, 1)
    for part, indices in (("validation", val), ("test", test)):
        expected = reproduce.evaluate(load_checkpoint(path), [items[i] for i in indices], 2)
        assert scores[part]["miou"] == pytest.approx(100 * expected["miou"])
        assert scores[part]["branch_miou"] == pytest.approx([100 * b for b in expected["branch_miou"]])
        assert len(scores[part]["branch_miou"]) == 3  # network 1 and network 2 on 2 translated images
    assert split_scores.main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["validation", "test"]
    assert f"ensemble {scores['test']['miou']:.1f}" in lines[1]

    assert not any(line.startswith("|") for line in lines)  # one model: no pick to pair

    other = save_checkpoint(
        tmp_path / "o.cellprep", build_model(config).eval(), ModelInfo(config, ["a", "b"], name="mine")
    )
    with pytest.raises(ValueError, match="not a run of reproduce.py"):
        split_scores.split_scores(other)


def test_split_scores_picks_the_output_best_on_validation_and_pairs_it_with_the_ensemble(
    reproduce, tmp_path, monkeypatch
):
    split_scores = _benchmark("split_scores")
    made = {  # validation and test mIoU %: the ensemble, then network 1's branch and two more
        "a": {
            "validation": {"miou": 90, "branch_miou": [93, 80, 91]},
            "test": {"miou": 75, "branch_miou": [92, 60, 62]},
        },
        "b": {
            "validation": {"miou": 90, "branch_miou": [90, 85, 85]},
            "test": {"miou": 88, "branch_miou": [80, 85, 85]},
        },
        "c": {
            "validation": {"miou": 80, "branch_miou": [70, 81, 79]},
            "test": {"miou": 85, "branch_miou": [70, 84, 83]},
        },
    }
    assert split_scores.picked_on_validation(made["a"]) == ("branch 1", 92)
    assert split_scores.picked_on_validation(made["b"]) == ("ensemble", 88)  # a tie keeps the ensemble
    assert split_scores.picked_on_validation(made["c"]) == ("branch 2", 84)
    monkeypatch.setattr(split_scores, "split_scores", lambda path, preset: made[path.name])
    out = tmp_path / "pick.md"
    assert split_scores.main(["a", "b", "c", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| a | 90.0; 93.0, 80.0, 91.0 | 75.0; 92.0, 60.0, 62.0 | branch 1 | 92.00 |" in text
    d = stats.paired_difference(
        {(0,): 0.92, (1,): 0.88, (2,): 0.84}, {(0,): 0.75, (1,): 0.88, (2,): 0.85}
    )
    assert f"| | 3 | {stats.difference_cells(d)} |" in text and d[0] == pytest.approx(16 / 3)


def test_ensemble_rules_merge_logits_probabilities_and_votes(reproduce, monkeypatch):
    rules = _benchmark("ensemble_rules")
    # one pixel, 3 branches, 2 classes: branch 1 sure of class 0, branches 2 and 3 less sure of class 1
    # (equal weights on the logits give class 0: gaps -4.6, +1.4, +1.4)
    p = np.array([[0.99, 0.01], [0.2, 0.8], [0.2, 0.8]], np.float32)[:, :, None, None]
    merged = rules.merged_labels(np.zeros((1, 1), np.uint8), p, np.full(3, 1 / 3, np.float32))
    assert merged["trained"][0, 0] == 0  # the model's own labels, passed through
    assert merged["probabilities"][0, 0] == 1  # mean 0.46 vs 0.54
    assert merged["vote"][0, 0] == 1  # 2 of 3
    heavy = rules.merged_labels(np.zeros((1, 1), np.uint8), p, np.array([0.8, 0.1, 0.1], np.float32))
    assert heavy["probabilities"][0, 0] == 0 and heavy["vote"][0, 0] == 1  # weights do not change votes
    # 1 vote each: the probabilities decide
    tie = np.array([[0.9, 0.1], [0.4, 0.6]], np.float32)[:, :, None, None]
    assert rules.merged_labels(np.zeros((1, 1)), tie, np.array([0.5, 0.5], np.float32))["vote"][0, 0] == 0


def test_ensemble_rules_score_the_trained_ensemble_as_reproduce_does(
    reproduce, tmp_path, monkeypatch, capsys
):
    from napari_cellprep.engine.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
    from napari_cellprep.model import ModelConfig, build_model

    rules = _benchmark("ensemble_rules")
    items = random_items(12)
    monkeypatch.setattr(_benchmark("split_scores"), "load_dataset", lambda name, condition: items)
    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, width=4, depth=2)
    paths = [
        save_checkpoint(
            tmp_path / f"m{fold}.cellprep",
            build_model(config).eval(),
            ModelInfo(config, ["a", "b"], name=f"nist-phase/clean/fold{fold}/seed0/x"),
        )
        for fold in (0, 1)
    ]
    result = rules.rule_scores(paths[1])
    _, _, test = datasets.split(12, 3, 1)
    expected = reproduce.evaluate(load_checkpoint(paths[1]), [items[i] for i in test], 2)
    assert result["trained"] == pytest.approx(100 * expected["miou"])
    assert set(result) == {"trained", "probabilities", "vote"} and all(0 <= v <= 100 for v in result.values())
    out = tmp_path / "rules.md"
    assert rules.main([*map(str, paths), "--out", str(out)]) == 0
    report = out.read_text()
    assert "| m1.cellprep | " + f"{result['trained']:.2f}" in report
    assert "| probabilities | 2 |" in report and "| vote | 2 |" in report


def test_each_run_records_the_commit_cpu_its_kernels_and_torch_it_was_made_with(reproduce, monkeypatch):
    made = report.provenance()
    assert made["torch"] == torch.__version__ and made["cpu"]
    head = made["commit"].removesuffix("+dirty")
    assert len(head) == 40 and int(head, 16) >= 0  # this checkout's HEAD
    assert made["cpu_kernels"].startswith(torch.backends.cpu.get_cpu_capability())
    if Path("/proc/cpuinfo").exists():
        assert " family " in made["cpu_id"] and " model " in made["cpu_id"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # other kernels, other numbers: recorded
    assert report.provenance()["cpu_kernels"].endswith(", ONEDNN_MAX_CPU_ISA=AVX2")
    machine = report.machines({"a": {"provenance": made}, "b": {}})
    assert (
        machine
        == f"{made['cpu']} ({made['cpu_id']}; {made['cpu_kernels']} kernels), torch {torch.__version__} (1 runs); 1 runs record none"
    )
    assert report.machines({"b": {}, "c": {}}).startswith("not recorded by these 2 runs")
    monkeypatch.setattr(report, "REPO", Path("/nonexistent"))
    assert report.provenance()["commit"] == "unknown"


def test_rerun_check_makes_a_stored_run_again_and_names_the_first_epoch_that_differs(
    reproduce, tmp_path, monkeypatch, capsys
):
    tiny = tiny_preset(reproduce, monkeypatch, "cpu", epochs=2)
    run = next(r for r in tiny.plans["headline"] if r.method == reproduce.PRODUCT_METHOD)
    stored = reproduce.execute(run, tiny, tmp_path)
    results = tmp_path / "results.json"
    check = _benchmark("rerun_check")
    argv = [run.key, "--epochs", "2", "--results", str(results)]

    results.write_text(json.dumps({"preset": "cpu", "runs": {run.key: stored}}))
    assert check.main(argv) == 0
    out = capsys.readouterr().out
    assert f"{run.key}: identical through epoch 2; stored run: {stored['provenance']}" in out
    assert "| 2 | " in out and "cpu_kernels" in out  # both epochs shown, and where they were made again

    stored["curves"]["train_loss"][1] += 1e-9  # made elsewhere: the same first epoch, not the second
    results.write_text(json.dumps({"preset": "cpu", "runs": {run.key: stored}}))
    assert check.main(argv) == 1
    assert f"{run.key}: differs from epoch 2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        check.main(["nist-phase/clean/fold9/seed0/unet", "--results", str(results)])
