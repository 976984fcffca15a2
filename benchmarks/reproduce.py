"""Reproduce Kato & Hotta's comparison on the labeled sets in ../shared/data.

Runs U-Net, U-Net++, Attention U-Net and CellPrep (no / fixed / learned ensemble) under one
protocol (same splits, seeds, optimiser, epochs, width), at equal epochs and at equal wall-clock
time, on clean and simulated low-light data, plus the candidate fixes, and writes
``docs/results.md`` and ``docs/results.json``. Runs are resumable: finished ones are read back
from the JSON and skipped.

    python benchmarks/reproduce.py --preset cpu            # width 8, 15 epochs: two runs at a time,
        # one torch thread each (--jobs 2), about two hours on an otherwise idle 2-core machine
    python benchmarks/reproduce.py --preset cpu --candidates   # then the candidate fixes (~1.5 h more)
    python benchmarks/reproduce.py --preset paper          # width 64, batch 16, 300 epochs (GPU)
    python benchmarks/reproduce.py --report-only           # rebuild docs/results.md from the JSON
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from napari_cellprep.engine.checkpoint import LoadedModel, ModelInfo, save_checkpoint
from napari_cellprep.engine.data import from_mask
from napari_cellprep.engine.degrade import LowLight
from napari_cellprep.engine.inference import predict
from napari_cellprep.engine.io import find_pairs, read_image, read_mask
from napari_cellprep.engine.metrics import confusion_matrix, kfold_splits, scores
from napari_cellprep.engine.normalize import Normalization
from napari_cellprep.engine.training import TrainConfig, initial_model, train
from napari_cellprep.model import CellPrepNet, ModelConfig, build_model, output_names

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CELLPREP_DATA", REPO.parent / "shared" / "data"))

CLASS_NAMES = {
    "nist-phase": ["background", "colony"],
    "isbi2012-membrane": ["interior", "membrane"],
    "vnc-em": ["background", "membrane", "mitochondria"],
}

CONDITIONS = {
    "clean": None,
    "low-light": LowLight(photons=20.0, read_noise=2.0),
    "very-low-light": LowLight(photons=5.0, read_noise=2.0),
}

METHODS: dict[str, dict] = {
    "unet": {"architecture": "unet", "backbone": "unet"},
    "unet++": {"architecture": "unet", "backbone": "unet++"},
    "attention-unet": {"architecture": "unet", "backbone": "attention-unet"},
    "cellprep-none": {"architecture": "cellprep", "ensemble": "none", "penultimate": None},
    "cellprep-fixed": {"architecture": "cellprep", "ensemble": "fixed", "penultimate": None},
    "cellprep": {"architecture": "cellprep", "ensemble": "learned", "penultimate": None},  # the paper's
    # candidate fixes, each one change from the paper's method
    "cellprep-p16": {"architecture": "cellprep", "penultimate": 16},
    "cellprep-equal": {"architecture": "cellprep", "ensemble_init": "equal", "penultimate": None},
    "cellprep-cosine": {"architecture": "cellprep", "lr_schedule": "cosine", "penultimate": None},
    "cellprep-warm": {"architecture": "cellprep", "warm_start": "unet", "penultimate": None},
    # longer training: does a gap open or close with three times the epochs?
    "unet-long": {"architecture": "unet", "backbone": "unet", "epochs_factor": 3},
    "cellprep-equal-long": {"architecture": "cellprep", "ensemble_init": "equal", "penultimate": None, "epochs_factor": 3},
}
TRAINING_OPTIONS = ("lr_schedule", "warm_start", "epochs_factor")
"""Keys of METHODS that configure training, not the model."""
SEED = 0
"""Default --seed; run seeds are SEED + fold."""
PAPER_METHODS = ["unet", "unet++", "attention-unet", "cellprep-none", "cellprep-fixed", "cellprep"]
CANDIDATES = ["cellprep-p16", "cellprep-equal", "cellprep-cosine", "cellprep-warm"]


@dataclass(frozen=True)
class Run:
    """One training + test evaluation. ``time_of`` matches the wall-clock time of another method."""

    dataset: str
    condition: str
    fold: int
    method: str
    time_of: str | None = None

    @property
    def key(self) -> str:
        suffix = f"@time-of-{self.time_of}" if self.time_of else ""
        return f"{self.dataset}/{self.condition}/fold{self.fold}/{self.method}{suffix}"


@dataclass
class Preset:
    width: int
    batch_size: int
    patch_size: int
    epochs: dict[str, int]
    folds: dict[str, int]
    steps_per_epoch: dict[str, int | None]
    runs: list[Run] = field(default_factory=list)
    candidates: list[Run] = field(default_factory=list)
    """Runs of the candidate fixes (``--candidates``), after and beside the paper's ``runs``."""
    depth: int = 4
    jobs: int = 1
    """Runs trained at once by default, each in its own process with one torch thread."""


def _paper_plan(use_folds: dict[str, int]) -> list[Run]:
    """The paper's comparison, fold by fold: U-Net and CellPrep on nist-phase clean (U-Net also
    at CellPrep's wall-clock time) and at both low-light levels, on isbi2012-membrane; then the
    nist-phase ablations (U-Net++, Attention U-Net, no and fixed ensemble) and vnc-em."""
    runs = []
    for f in range(use_folds["nist-phase"]):
        runs += [Run("nist-phase", "clean", f, "unet"), Run("nist-phase", "clean", f, "cellprep"),
                 Run("nist-phase", "clean", f, "unet", time_of="cellprep")]
        runs += [Run("nist-phase", c, f, m) for c in ("very-low-light", "low-light") for m in ("unet", "cellprep")]
        if f < use_folds["isbi2012-membrane"]:
            runs += [Run("isbi2012-membrane", "clean", f, m) for m in ("unet", "cellprep")]
    for f in range(use_folds["nist-phase"]):
        runs += [Run("nist-phase", "clean", f, m) for m in ("unet++", "attention-unet", "cellprep-fixed", "cellprep-none")]
    for f in range(use_folds["vnc-em"]):
        runs += [Run("vnc-em", "clean", f, m) for m in ("unet", "cellprep")]
    return runs


def _candidate_plan(paper: list[Run]) -> list[Run]:
    """The candidate fixes, each one change from the paper's CellPrep: all of them on fold 0 of
    very-low-light nist-phase and isbi2012-membrane; equal ensemble init (the fix with a diagnosed
    cause: random init starts some weights negative) wherever the paper's CellPrep ran; and three
    times the epochs for U-Net and equal-init CellPrep on those two fold-0 cases."""
    cases = [("nist-phase", "very-low-light"), ("isbi2012-membrane", "clean")]
    runs = [Run(d, c, 0, m) for d, c in cases for m in CANDIDATES]
    runs += [replace(r, method="cellprep-equal") for r in paper if r.method == "cellprep" and not r.time_of
             and replace(r, method="cellprep-equal") not in runs]
    runs += [Run(d, c, 0, m) for d, c in cases for m in ("cellprep-equal-long", "unet-long")]
    return runs


def _plans(use_folds: dict[str, int]) -> dict[str, list[Run]]:
    paper = _paper_plan(use_folds)
    return {"runs": paper, "candidates": _candidate_plan(paper)}


PRESETS = {
    "cpu": Preset(
        width=8,
        batch_size=8,
        patch_size=128,
        epochs={"nist-phase": 15, "isbi2012-membrane": 15, "vnc-em": 15},
        folds={"nist-phase": 3, "isbi2012-membrane": 3, "vnc-em": 4},
        steps_per_epoch={"nist-phase": None, "isbi2012-membrane": None, "vnc-em": 40},
        **_plans({"nist-phase": 3, "isbi2012-membrane": 3, "vnc-em": 2}),
        jobs=2,
    ),
    "paper": Preset(
        width=64,
        batch_size=16,
        patch_size=256,
        epochs={"nist-phase": 300, "isbi2012-membrane": 300, "vnc-em": 300},
        folds={"nist-phase": 3, "isbi2012-membrane": 3, "vnc-em": 4},
        steps_per_epoch={"nist-phase": None, "isbi2012-membrane": None, "vnc-em": None},
        **_plans({"nist-phase": 3, "isbi2012-membrane": 3, "vnc-em": 4}),
    ),
    "smoke": Preset(
        width=4,
        batch_size=4,
        patch_size=64,
        epochs={"nist-phase": 1, "isbi2012-membrane": 1, "vnc-em": 1},
        folds={"nist-phase": 3, "isbi2012-membrane": 3, "vnc-em": 4},
        steps_per_epoch={"nist-phase": 2, "isbi2012-membrane": 2, "vnc-em": 2},
        runs=[Run("nist-phase", "clean", 0, "unet"), Run("nist-phase", "very-low-light", 0, "cellprep"),
              Run("nist-phase", "clean", 0, "cellprep"), Run("nist-phase", "clean", 0, "unet", time_of="cellprep"),
              Run("nist-phase", "clean", 0, "cellprep-warm")],
        depth=2,
    ),
}


def load_dataset(name: str, condition: str, limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(raw image, mask, name) triples; low-light conditions degrade each image with a fixed seed."""
    pairs = find_pairs(DATA / name / "images", DATA / name / "masks")[:limit]
    level = CONDITIONS[condition]
    items = []
    for index, (image_path, mask_path) in enumerate(pairs):
        image = read_image(image_path)
        if level is not None:
            image = level.apply(image, seed=10_000 + index)
        items.append((image, read_mask(mask_path), image_path.stem))
    return items


def split(n: int, folds: int, fold: int, seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Train / validation / test indices: the k-fold test fold, 10% of the rest for validation."""
    train_idx, test_idx = kfold_splits(n, folds, seed)[fold]
    rng = np.random.default_rng(seed + fold)
    train_idx = rng.permutation(train_idx)
    n_val = max(1, round(0.1 * len(train_idx)))
    return sorted(train_idx[n_val:].tolist()), sorted(train_idx[:n_val].tolist()), sorted(test_idx.tolist())


def warm_start_from(unet: LoadedModel, info: ModelInfo) -> LoadedModel:
    """A CellPrep model whose two networks start from a trained U-Net's backbone and head."""
    model = build_model(info.config)
    source = unet.model.state_dict()
    state = model.state_dict()
    for name, tensor in source.items():
        if name.startswith("backbone."):
            rest = name[len("backbone."):]
            state[f"net1.{rest}"] = tensor.clone()
            state[f"net2.{rest}"] = tensor.clone()
        elif name.startswith("head."):
            state[f"head2.{name[len('head.'):]}"] = tensor.clone()
    model.load_state_dict(state)
    return LoadedModel(model, info)


def evaluate(loaded: LoadedModel, items, num_classes: int) -> dict:
    cm = np.zeros((num_classes, num_classes), np.int64)
    s = loaded.info.config.num_outputs
    branch_cms = np.zeros((s, num_classes, num_classes), np.int64)
    for image, mask, _ in items:
        pred = predict(loaded, image, outputs=("branches",))
        cm += confusion_matrix(pred.labels, mask, num_classes)
        branch_labels = pred.branch_labels if pred.branch_labels is not None else pred.labels[None]
        for b in range(s):
            branch_cms[b] += confusion_matrix(branch_labels[b], mask, num_classes)
    result = scores(cm).to_dict()
    result["branch_miou"] = [scores(c).miou for c in branch_cms]
    result["confusion"] = cm.tolist()
    return result


def model_config(dataset: str, method: str, preset: Preset) -> ModelConfig:
    spec = {k: v for k, v in METHODS[method].items() if k not in TRAINING_OPTIONS}
    return ModelConfig(num_classes=len(CLASS_NAMES[dataset]), width=preset.width, depth=preset.depth, **spec)


def initial_weights(r: dict, preset: Preset) -> list[float] | None:
    """w_1..w_S before training, as recorded, or rebuilt from the seed for runs that predate the
    record (not possible for warm starts, whose ensemble came from the global RNG)."""
    if "initial_ensemble_weights" in r:
        return r["initial_ensemble_weights"]
    method = r["method"].split("@")[0]
    if METHODS[method].get("warm_start"):
        return None
    config = model_config(r["dataset"], method, preset)
    return ensemble_weights_of(initial_model(config, SEED + r["fold"]))


def ensemble_weights_of(model) -> list[float]:
    """w_1..w_S of a CellPrep model; [] for a plain network."""
    return model.ensemble_parameters()[0].tolist() if isinstance(model, CellPrepNet) else []


def execute(run: Run, preset: Preset, results: dict, models_dir: Path, seed: int) -> dict:
    names = CLASS_NAMES[run.dataset]
    c = len(names)
    items = load_dataset(run.dataset, run.condition)
    tr, va, te = split(len(items), preset.folds[run.dataset], run.fold, seed)
    normalization = Normalization("minmax")
    config = model_config(run.dataset, run.method, preset)
    schedule = METHODS[run.method].get("lr_schedule", "constant")
    warm = METHODS[run.method].get("warm_start")
    info = ModelInfo(config, names, normalization, name=run.key)
    train_items = [from_mask(items[i][0], items[i][1], normalization, name=items[i][2]) for i in tr]
    val_items = [from_mask(items[i][0], items[i][1], normalization, name=items[i][2]) for i in va]
    epochs = preset.epochs[run.dataset] * METHODS[run.method].get("epochs_factor", 1)
    time_limit = None
    if run.time_of:
        reference = results[replace(run, method=run.time_of, time_of=None).key]
        time_limit = reference["train_seconds"]
        epochs = epochs * 20  # stopped by the clock
    tc = TrainConfig(
        epochs=epochs,
        batch_size=preset.batch_size,
        patch_size=preset.patch_size,
        steps_per_epoch=preset.steps_per_epoch[run.dataset],
        lr_schedule=schedule,
        seed=seed + run.fold,
    )
    init = None
    if warm:
        unet_path = models_dir / (replace(run, method="unet").key.replace("/", "_") + ".cellprep")
        from napari_cellprep.engine.checkpoint import load_checkpoint

        init = warm_start_from(load_checkpoint(unet_path), info)
    initial = ensemble_weights_of(init.model if init is not None else initial_model(config, tc.seed))
    stop = threading.Event()
    timer = threading.Timer(time_limit, stop.set) if time_limit else None
    start = time.perf_counter()
    if timer:
        timer.start()
    result = train(train_items, val_items, info, tc, init=init, stop=stop)
    train_seconds = time.perf_counter() - start
    if timer:
        timer.cancel()
    test = evaluate(result.model, [items[i] for i in te], c)
    save_checkpoint(models_dir / (run.key.replace("/", "_") + ".cellprep"), result.model.model, result.model.info, overwrite=True)
    weights = result.history[-1].ensemble_weights if result.history else []
    return {
        "run": run.key,
        "dataset": run.dataset,
        "condition": run.condition,
        "fold": run.fold,
        "method": run.method + (f"@time-of-{run.time_of}" if run.time_of else ""),
        "test": test,
        "train_seconds": train_seconds,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_miou": result.best_miou,
        "ensemble_weights": weights,
        "initial_ensemble_weights": initial,
        "output_names": output_names(config, names),
        "curves": {
            "train_loss": [e.train_loss for e in result.history],
            "val_miou": [e.val_miou for e in result.history],
        },
        "n_train": len(tr), "n_val": len(va), "n_test": len(te),
        "torch_threads": torch.get_num_threads(),
    }


def dependencies(run: Run) -> list[str]:
    """Keys whose results must exist first: the clock of ``time_of``, the U-Net of a warm start."""
    keys = [replace(run, method=run.time_of, time_of=None).key] if run.time_of else []
    if METHODS[run.method].get("warm_start"):
        keys.append(replace(run, method="unet").key)
    return keys


def _worker(run: Run, preset_name: str, results: dict, models_dir: Path, seed: int, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    return execute(run, PRESETS[preset_name], results, models_dir, seed)


def run_all(todo: list[Run], preset_name: str, results: dict, models_dir: Path, seed: int, jobs: int,
            threads: int | None):
    """Yield (run, result) as runs finish, ``jobs`` at a time in worker processes (in this process
    when 1), in plan order as far as their dependencies allow."""
    pending, running = list(todo), {}
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None
    try:
        while pending or running:
            ready = [r for r in pending if all(k in results for k in dependencies(r))]
            slots = ready[: jobs - len(running)]
            if not slots and not running:
                missing = sorted({k for r in pending for k in dependencies(r) if k not in results})
                raise SystemExit(f"runs {[r.key for r in pending]} need {missing} first; include them in --only")
            for run in slots:
                pending.remove(run)
                print(f"[{time.strftime('%H:%M:%S')}] start {run.key}", flush=True)
                args = (run, preset_name, results, models_dir, seed, threads)
                if pool is None:
                    yield run, _worker(*args)
                else:
                    running[pool.submit(_worker, *args)] = run
            if running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield running.pop(future), future.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


READING = "## Reading these results"
"""Heading of the hand-written interpretation at the end of results.md, kept on regeneration."""


def _mean_std(values: list[float]) -> str:
    a = np.asarray(values, dtype=float) * 100
    return f"{a.mean():.2f} ± {a.std():.2f}" if len(a) > 1 else f"{a.mean():.2f}"


def _weights(rs: list[dict], preset: Preset) -> str:
    """Each fold's ensemble weights, initial → learned ("?" where the initial ones are unknown)."""
    def fmt(ws: list[float] | None) -> str:
        return "?" if ws is None else "(" + ", ".join(f"{w:.2f}" for w in ws) + ")"

    if len(rs[0]["ensemble_weights"]) < 2:
        return ""
    rs = sorted(rs, key=lambda r: r["fold"])
    return "; ".join(f"{fmt(initial_weights(r, preset))} → {fmt(r['ensemble_weights'])}" for r in rs)


def write_report(results: dict, preset_name: str, preset: Preset, out: Path, command: str) -> None:
    """docs/results.md: the paper's tables (per-class IoU/Dice, mIoU, mDice, mean ± std over folds)."""
    rows: dict[tuple[str, str, str], list[dict]] = {}
    for r in results.values():
        rows.setdefault((r["dataset"], r["condition"], r["method"]), []).append(r)
    lines = [
        "# Results: the paper's comparison on real data",
        "",
        f"Generated by `{command}` (the paper's comparison; `--candidates` adds the candidate fixes) "
        f"(preset `{preset_name}`: width {preset.width}, depth {preset.depth}, "
        f"batch {preset.batch_size}, patch {preset.patch_size}², epochs {preset.epochs}, Adam 1e-3, seed 0, "
        "min-max normalisation, no augmentation besides flips/90° rotations; 10% of each training fold held out "
        "for choosing the best epoch by validation mIoU). Raw figures: `results.json`. "
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}; torch threads per "
        "run are in `results.json` (`torch_threads`; runs without it used 2). `train s` is wall-clock time on "
        "a machine shared with other work, so it is noisy.",
        "",
        f"**{sum(run.key in results for run in preset.runs)} of the paper's comparison's {len(preset.runs)} "
        f"planned runs and {sum(run.key in results for run in preset.candidates)} of the "
        f"{len(preset.candidates)} candidate runs have finished**; a table lists only what ran, and `n` says over "
        "how many folds it averages. The train times of the paper's runs add up to "
        f"{sum(results[r.key]['train_seconds'] for r in preset.runs if r.key in results) / 3600:.1f} h, "
        f"{sum(results[r.key]['train_seconds'] for r in preset.candidates if r.key in results) / 3600:.1f} h for "
        "the candidates (divide by `--jobs`). "
        "Scores are % (mean ± std over those folds). Low-light conditions: "
        + "; ".join(f"`{k}` = Poisson shot noise at a mean of {v.photons:g} photons/pixel plus Gaussian read "
                    f"noise σ = {v.read_noise:g} e⁻ (seed 10000 + image index)" for k, v in CONDITIONS.items() if v)
        + ".",
        "",
    ]
    for dataset in CLASS_NAMES:
        names = CLASS_NAMES[dataset]
        for condition in CONDITIONS:
            keys = sorted(k for k in rows if k[0] == dataset and k[1] == condition)
            if not keys:
                continue
            lines += [f"## {dataset}, {condition}", ""]
            head = "| method | n | " + " | ".join(f"IoU {n}" for n in names) + " | mIoU | " + " | ".join(
                f"Dice {n}" for n in names) + " | mDice | epochs | train s | branch mIoU (net1, net2 on t1..tC) | ensemble weights: initial → learned |"
            lines += [head, "|" + "---|" * (head.count("|") - 1)]
            for key in keys:
                rs = rows[key]
                t = [r["test"] for r in rs]
                iou = [_mean_std([x["iou"][k] for x in t]) for k in range(len(names))]
                dice = [_mean_std([x["dice"][k] for x in t]) for k in range(len(names))]
                branch = ", ".join(f"{np.mean([x['branch_miou'][b] for x in t]) * 100:.1f}" for b in range(len(t[0]["branch_miou"]))) if len(t[0]["branch_miou"]) > 1 else ""
                weights = _weights(rs, preset)
                lines.append(
                    f"| {key[2]} | {len(rs)} | " + " | ".join(iou) + f" | **{_mean_std([x['miou'] for x in t])}** | "
                    + " | ".join(dice) + f" | {_mean_std([x['mdice'] for x in t])} | "
                    f"{np.mean([r['epochs_run'] for r in rs]):.0f} | {np.mean([r['train_seconds'] for r in rs]):.0f} | {branch} | {weights} |"
                )
            lines.append("")
            unet = rows.get((dataset, condition, "unet"))
            for method in ("cellprep", "cellprep-equal"):
                cell = rows.get((dataset, condition, method))
                folds = sorted({r["fold"] for r in unet or []} & {r["fold"] for r in cell or []})
                if folds:
                    u = np.mean([r["test"]["miou"] for r in unet if r["fold"] in folds])
                    c = np.mean([r["test"]["miou"] for r in cell if r["fold"] in folds])
                    share = (c - u) / (1 - u) * 100 if u < 1 else float("nan")
                    lines += [
                        f"`{method}` − `unet` at equal epochs, folds {folds}: {100 * (c - u):+.2f} mIoU points; "
                        f"share of U-Net's error (1 − mIoU) removed: {share:+.1f}% (paper: about +4%).",
                        "",
                    ]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.md"
    previous = path.read_text() if path.exists() else ""
    notes = previous[previous.index(READING):] if READING in previous else ""  # hand-written, kept
    path.write_text("\n".join(lines) + "\n" + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--models", type=Path, default=REPO / "runs" / "models")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--only", nargs="*", help="run only keys containing one of these strings")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--candidates", action="store_true", help="also run the candidate fixes")
    parser.add_argument("--jobs", type=int, help="runs trained at once, each in its own process (default: the preset's)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: 1 with --jobs > 1, else torch's choice)")
    parser.add_argument("--merge", nargs="*", type=Path, default=[], help="results.json files of other runs to include")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    json_path = args.out / "results.json"
    results = json.loads(json_path.read_text())["runs"] if json_path.exists() else {}
    for other in args.merge:  # e.g. a second process that ran other keys with --only
        results.update(json.loads(other.read_text())["runs"])
    command = f"python benchmarks/reproduce.py --preset {args.preset}"
    args.models.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"preset": args.preset, "command": command, "runs": results}, indent=1))
        os.replace(tmp, json_path)
        write_report(results, args.preset, preset, args.out, command)

    if args.merge:
        save()
    if not args.report_only:
        plan = preset.runs + (preset.candidates if args.candidates else [])
        todo = [r for r in plan if r.key not in results and (not args.only or any(s in r.key for s in args.only))]
        jobs = args.jobs or preset.jobs
        threads = args.threads or (1 if jobs > 1 else None)
        for run, result in run_all(todo, args.preset, results, args.models, args.seed, jobs, threads):
            results[run.key] = result
            print(f"[{time.strftime('%H:%M:%S')}] done {run.key}: test mIoU {result['test']['miou']:.4f} "
                  f"({result['epochs_run']} epochs, {result['train_seconds']:.0f} s)", flush=True)
            save()
    write_report(results, args.preset, preset, args.out, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
