"""Kato & Hotta's comparison on the labeled sets in ../shared/data, under an honest protocol.

Every run is one (set, condition, fold, seed, method): the fold picks the test images, the seed
(independent of the fold) the initialisation and patch sampling. Budgets are optimiser steps,
never a wall clock: equal epochs, and equal compute (``@flops-of-X``: U-Net gets as many training
FLOPs as method X, counted per step with torch's FlopCounterMode). The report gives mean ±
sample std over folds × seeds, and each method's paired difference to U-Net (same fold and seed)
with a 95% t interval; "not distinguishable" when it holds 0. Runs resume from the JSON.

    python -m benchmarks.paper.reproduce --plan screen      # each change of the paper's method, fold 0, 2 seeds
    python -m benchmarks.paper.reproduce --plan headline    # 3 cells × 3 folds × 3 seeds × 4 arms
    python -m benchmarks.paper.reproduce --plan full        # + nist clean, vnc-em (4 folds), Attention U-Net
    python -m benchmarks.paper.reproduce --preset gpu-300 --plan gpu   # the paper's 300 epochs, on a GPU
    python -m benchmarks.paper.reproduce --report-only      # rebuild docs/results/results.md from the JSON

The archive of the first protocol (one seed = the fold, wall-clock equal time) is
``docs/results/archive/results-v1.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.harness.datasets import CLASS_NAMES, CONDITIONS, REPO, load_dataset, split
from benchmarks.harness.report import machines, provenance
from benchmarks.harness.stats import difference_cells, mean_std, paired_difference
from napari_cellprep.engine.checkpoint import LoadedModel, ModelInfo, save_checkpoint
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.engine.prediction.evaluation import evaluate as evaluate_pairs
from napari_cellprep.engine.training.data import from_mask
from napari_cellprep.engine.training.loop import TrainConfig, initial_model, train
from napari_cellprep.model import PAPER, CellPrepNet, ModelConfig, build_model, method_loss, output_names

PAPER_BACKBONE = {k: PAPER[k] for k in ("upsample", "downsample", "norm")}
PRODUCT = {
    "penultimate": 16,
    "ensemble": "softmax",
    "upsample": "resize",
    "downsample": "blur",
    "filter_activation": "softplus",
}
"""The candidate combination of the changes of issue #10 §1 (promoted by the screen)."""

METHODS: dict[str, dict] = {
    "unet": {"architecture": "unet", "backbone": "unet", **PAPER_BACKBONE},
    "unet++": {"architecture": "unet", "backbone": "unet++", **PAPER_BACKBONE},
    "attention-unet": {"architecture": "unet", "backbone": "attention-unet", **PAPER_BACKBONE},
    "cellprep": {"architecture": "cellprep", **PAPER},  # the paper's method exactly
    "cellprep-none": {"architecture": "cellprep", **PAPER, "ensemble": "none"},
    "cellprep-fixed": {"architecture": "cellprep", **PAPER, "ensemble": "fixed"},
    # one change each from the paper's method
    "cellprep-p16": {"architecture": "cellprep", **PAPER, "penultimate": 16},
    "cellprep-equal": {"architecture": "cellprep", **PAPER, "ensemble_init": "equal"},
    "cellprep-softmax": {"architecture": "cellprep", **PAPER, "ensemble": "softmax"},
    "cellprep-resize": {"architecture": "cellprep", **PAPER, "upsample": "resize"},
    "cellprep-blur": {"architecture": "cellprep", **PAPER, "downsample": "blur"},
    "cellprep-softplus": {"architecture": "cellprep", **PAPER, "filter_activation": "softplus"},
    "cellprep-group": {"architecture": "cellprep", **PAPER, "norm": "group"},
    "cellprep-split-batch": {"architecture": "cellprep", **PAPER, "norm": "split-batch"},
    # the combination, and U-Net on the same backbone
    "cellprep-product": {"architecture": "cellprep", **PAPER, **PRODUCT},
    "unet-resize": {"architecture": "unet", "backbone": "unet", **PAPER_BACKBONE, "upsample": "resize"},
    # the combination with network 2's BatchNorm statistics per translated image: the single change
    # keeps the paper's random ensemble init, which decides its fate on some seeds
    "cellprep-product-split-batch": {"architecture": "cellprep", **PAPER, **PRODUCT, "norm": "split-batch"},
    # the combination at half the cpu preset's width (a method's width overrides the preset's): its
    # training step costs about what U-Net's does (9.8 against 9.1 GFLOP; the combination's 37.9),
    # so that equal compute no longer hands U-Net four times the epochs
    "cellprep-product-narrow": {"architecture": "cellprep", **PAPER, **PRODUCT, "width": 4},
}
TRAINING: dict[str, dict] = {}
"""``TrainConfig`` settings of the methods that train otherwise than the preset says."""
SINGLE_CHANGES = [
    "cellprep-p16",
    "cellprep-equal",
    "cellprep-softmax",
    "cellprep-resize",
    "cellprep-blur",
    "cellprep-softplus",
    "cellprep-group",
    "cellprep-split-batch",
]
SCREEN_EXTRAS = ["cellprep-product-split-batch"]
"""Screened beside the single changes: compared with ``cellprep-product`` (same fold and seed)."""
RETIRED = ["cellprep-n2v"]
"""Methods whose stored runs the report still reads but that no longer run: ``cellprep-n2v``, the
combination with a denoise head trained by a Noise2Void loss (W = 100, issue #10 §1), screened and
in the grid as ``SCREEN_EXTRAS`` were; it measured worse (docs/results.md) and the option left the
product (issue #38 §4). Compared with ``cellprep-product``."""
HEADLINE_CELLS = [
    ("nist-phase", "low-light"),
    ("nist-phase", "very-low-light"),
    ("isbi2012-membrane", "clean"),
]
PRODUCT_METHOD = "cellprep-product"
NARROW_METHOD = "cellprep-product-narrow"
ON_PRODUCT = [*RETIRED, *SCREEN_EXTRAS, NARROW_METHOD]
"""The methods made on top of ``cellprep-product``, and compared with it (same fold and seed)."""
FLOPS_MATCHED = [PRODUCT_METHOD, NARROW_METHOD]
"""The methods whose runs each come with U-Net trained for their FLOPs (``unet@flops-of-X``)."""
GRID_METHODS = ["attention-unet", *SINGLE_CHANGES, *SCREEN_EXTRAS]
"""Run on every fold of every set by ``--plan full`` (issue #10 §3), beside the core arms."""
SETS = [("nist-phase", c) for c in CONDITIONS] + [
    ("isbi2012-membrane", "clean"),
    ("vnc-em", "clean"),
]
FOLDS = {"nist-phase": 3, "isbi2012-membrane": 3, "vnc-em": 4}
"""k of each set's k-fold split (vnc-em: 20 images, 4 test folds of 5)."""


@dataclass(frozen=True)
class Run:
    """One training + test evaluation. ``flops_of`` gives U-Net the training FLOPs of that method."""

    dataset: str
    condition: str
    fold: int
    seed: int
    method: str
    flops_of: str | None = None

    @property
    def label(self) -> str:
        return self.method + (f"@flops-of-{self.flops_of}" if self.flops_of else "")

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.condition}/fold{self.fold}/seed{self.seed}/{self.label}"


@dataclass
class Preset:
    """A budget: network size, optimisation and epochs per set; the plans are lists of runs."""

    width: int
    batch_size: int
    patch_size: int
    epochs: dict[str, int]
    folds: dict[str, int]
    steps_per_epoch: dict[str, int | None]
    plans: dict[str, list[Run]] = field(default_factory=dict)
    depth: int = 4
    jobs: int = 1
    """Runs trained at once by default, each in its own process with one torch thread."""

    @property
    def largest_plan(self) -> str:
        """The name of the plan with the most runs (``full``, ``gpu``): the report's "Still to run"."""
        return max(self.plans, key=lambda name: len(self.plans[name]))


def _arms(dataset: str, condition: str, fold: int, seed: int, methods: list[str]) -> list[Run]:
    runs = [Run(dataset, condition, fold, seed, m) for m in methods]
    runs += [Run(dataset, condition, fold, seed, "unet", flops_of=m) for m in methods if m in FLOPS_MATCHED]
    return runs


def _cpu_plans() -> dict[str, list[Run]]:
    """``screen``: U-Net, the paper's CellPrep, the combination, each single change and the
    combination with split-batch norm (``SCREEN_EXTRAS``) on fold 0 of two
    headline cells, seeds 0 and 1 (most informative runs first). ``headline``: U-Net, the
    paper's CellPrep, the combination and U-Net at its FLOPs, 3 folds × 3 seeds on the three
    headline cells. ``full``: the headline, then, one seed at a time, nist-phase clean (with
    Attention U-Net), vnc-em on all 4 folds, and the paper's other comparisons on nist-phase clean
    (U-Net++, no ensemble, fixed weights), so that the resumable harness fills every set's folds
    before it adds seeds; after seed 0 of those, the grid: each screened change and Attention U-Net
    on every fold of every set (``GRID_METHODS``, seed 0). vnc-em's seeds 1 and 2 add split-batch
    norm, which on seed 0 learned mitochondria on the folds where the paper's CellPrep missed them.
    Last, the combination at U-Net's cost per step (``NARROW_METHOD``) and U-Net at its FLOPs on
    the headline cells, 3 folds × 3 seeds, one seed at a time."""
    core = ["unet", "cellprep", PRODUCT_METHOD]
    screen = [
        r
        for seed in (0, 1)
        for r in [r for d, c in HEADLINE_CELLS[1:] for r in _arms(d, c, 0, seed, core)]
        + _screened(SINGLE_CHANGES + SCREEN_EXTRAS, seed)
    ]
    headline = _headline_arms(core)
    ablations, nist_clean = ["unet++", "cellprep-none", "cellprep-fixed"], core + ["attention-unet"]
    vnc_em = core + ["cellprep-split-batch"]  # seeds 1 and 2; seed 0 has it in the grid
    full = headline + [
        r
        for seed in range(3)
        for r in [r for fold in range(3) for r in _arms("nist-phase", "clean", fold, seed, nist_clean)]
        + [r for fold in range(4) for r in _arms("vnc-em", "clean", fold, seed, vnc_em if seed else core)]
        + [Run("nist-phase", "clean", fold, seed, m) for fold in range(3) for m in ablations]
        + (_grid(0) if seed == 0 else [])
    ]
    narrow = _headline_arms([NARROW_METHOD])
    return {"screen": screen, "headline": headline, "full": list(dict.fromkeys(full + narrow))}


def _screened(methods: list[str], seed: int) -> list[Run]:
    """``methods`` on the screen's cells (fold 0 of the last two headline cells) for one seed."""
    return [Run(d, c, 0, seed, m) for d, c in HEADLINE_CELLS[1:] for m in methods]


def _headline_arms(methods: list[str]) -> list[Run]:
    """``methods`` (and U-Net at their FLOPs) on the headline cells, 3 folds × 3 seeds, seed by seed."""
    return [
        r
        for seed in range(3)
        for fold in range(3)
        for d, c in HEADLINE_CELLS
        for r in _arms(d, c, fold, seed, methods)
    ]


def _grid(seed: int) -> list[Run]:
    """``GRID_METHODS`` on every fold of every set, one fold of every set at a time."""
    return [
        Run(d, c, fold, seed, m)
        for fold in range(max(FOLDS.values()))
        for d, c in SETS
        if fold < FOLDS[d]
        for m in GRID_METHODS
    ]


PRESETS = {
    "cpu": Preset(
        width=8,
        batch_size=8,
        patch_size=128,
        epochs={"nist-phase": 20, "isbi2012-membrane": 20, "vnc-em": 20},
        folds=FOLDS,
        steps_per_epoch={"nist-phase": None, "isbi2012-membrane": None, "vnc-em": 40},
        plans=_cpu_plans(),
    ),
    "gpu-300": Preset(  # the paper's budget: whole 256² images, batch 16, 300 epochs
        width=16,
        batch_size=16,
        patch_size=256,
        epochs={"nist-phase": 300, "isbi2012-membrane": 300, "vnc-em": 300},
        folds=FOLDS,
        steps_per_epoch={"nist-phase": None, "isbi2012-membrane": None, "vnc-em": None},
        plans={
            "gpu": [  # U-Net and the paper's CellPrep at 300 epochs, U-Net at that CellPrep's FLOPs
                r
                for fold in range(3)
                for m, flops_of in (("unet", None), ("cellprep", None), ("unet", "cellprep"))
                for r in [Run("nist-phase", "low-light", fold, 0, m, flops_of=flops_of)]
            ]
        },
        depth=3,  # with width 16: widths 16-128 over three downsamplings, about the authors' U-Net
        jobs=3,
    ),
    "smoke": Preset(
        width=4,
        batch_size=4,
        patch_size=64,
        epochs={"nist-phase": 1, "isbi2012-membrane": 1, "vnc-em": 1},
        folds=FOLDS,
        steps_per_epoch={"nist-phase": 2, "isbi2012-membrane": 2, "vnc-em": 2},
        plans={"screen": _arms("nist-phase", "very-low-light", 0, 0, ["unet", "cellprep", PRODUCT_METHOD])},
        depth=2,
    ),
}


def evaluate(loaded: LoadedModel, items, num_classes: int) -> dict:
    evaluation = evaluate_pairs(loaded, [(image, mask) for image, mask, _ in items], outputs=("branches",))
    result = evaluation.scores.to_dict()
    result["branch_miou"] = [branch.miou for branch in evaluation.branch_scores]
    result["confusion"] = evaluation.confusion.tolist()
    return result


def model_config(dataset: str, method: str, preset: Preset) -> ModelConfig:
    """The method's model on this set and preset; a method's own ``width`` overrides the preset's."""
    settings = {"width": preset.width, "depth": preset.depth, **METHODS[method]}
    return ModelConfig(num_classes=len(CLASS_NAMES[dataset]), **settings)


def train_step_flops(config: ModelConfig, batch_size: int, patch_size: int) -> int:
    """FLOPs of one training step (forward, Eq. 1 loss, backward) at this batch and patch size,
    counted on a batch of one: every operation FlopCounterMode counts is linear in the batch, and a
    whole batch of 256² tiles takes seconds per count on one CPU thread."""
    return batch_size * counted_step_flops(config, 1, patch_size)


def counted_step_flops(config: ModelConfig, batch_size: int, patch_size: int) -> int:
    """One training step's FLOPs as FlopCounterMode counts them on a batch of random data."""
    model = build_model(config).train()
    x = torch.rand(batch_size, config.in_channels, patch_size, patch_size)
    y = torch.randint(0, config.num_classes, (batch_size, patch_size, patch_size))
    with FlopCounterMode(display=False) as counter:
        loss, _ = method_loss(model(x), y)
        loss.backward()
    return int(counter.get_total_flops())


def ensemble_weights_of(model) -> list[float]:
    """w_1..w_S of a CellPrep model; [] for a plain network."""
    return model.ensemble_parameters()[0].tolist() if isinstance(model, CellPrepNet) else []


def _steps_per_epoch(run: Run, preset: Preset, n_train_pixels: int) -> int:
    fixed = preset.steps_per_epoch[run.dataset]
    return fixed or max(1, math.ceil(n_train_pixels / (preset.patch_size**2 * preset.batch_size)))


def execute(run: Run, preset: Preset, models_dir: Path) -> dict:
    names = CLASS_NAMES[run.dataset]
    c = len(names)
    items = load_dataset(run.dataset, run.condition)
    tr, va, te = split(len(items), preset.folds[run.dataset], run.fold)
    normalization = Normalization("minmax")
    config = model_config(run.dataset, run.method, preset)
    info = ModelInfo(config, names, normalization, name=run.key)
    train_items = [from_mask(items[i][0], items[i][1], normalization, name=items[i][2]) for i in tr]
    val_items = [from_mask(items[i][0], items[i][1], normalization, name=items[i][2]) for i in va]
    steps = _steps_per_epoch(run, preset, sum(items[i][1].size for i in tr))
    step_flops = train_step_flops(config, preset.batch_size, preset.patch_size)
    total_steps = preset.epochs[run.dataset] * steps
    if run.flops_of:
        reference = train_step_flops(
            model_config(run.dataset, run.flops_of, preset), preset.batch_size, preset.patch_size
        )
        total_steps = round(total_steps * reference / step_flops)
    epochs = max(1, round(total_steps / steps))
    tc = TrainConfig(
        epochs=epochs,
        batch_size=preset.batch_size,
        patch_size=preset.patch_size,
        steps_per_epoch=steps,
        seed=run.seed,
        **TRAINING.get(run.method, {}),
    )
    initial = ensemble_weights_of(initial_model(config, tc.seed))
    start = time.perf_counter()
    result = train(train_items, val_items, info, tc)
    train_seconds = time.perf_counter() - start
    test = evaluate(result.model, [items[i] for i in te], c)
    save_checkpoint(
        models_dir / (run.key.replace("/", "_") + ".cellprep"),
        result.model.model,
        result.model.info,
        overwrite=True,
    )
    weights = ensemble_weights_of(result.model.model)
    return {
        "run": run.key,
        "dataset": run.dataset,
        "condition": run.condition,
        "fold": run.fold,
        "seed": run.seed,
        "method": run.label,
        "settings": settings_of(run),
        "test": test,
        "train_seconds": train_seconds,
        "epochs": epochs,
        "epochs_run": result.epochs_run,
        "steps": epochs * steps,
        "step_gflop": step_flops / 1e9,
        "train_pflop": step_flops * epochs * steps / 1e15,
        "best_epoch": result.best_epoch,
        "best_val_miou": result.best_miou,
        "ensemble_weights": weights,
        "initial_ensemble_weights": initial,
        "output_names": output_names(config),
        "curves": {
            "train_loss": [e.train_loss for e in result.history],
            "val_miou": [e.val_miou for e in result.history],
        },
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(te),
        "torch_threads": torch.get_num_threads(),
        "provenance": provenance(),
    }


VALIDATION = "tiled"
"""How validation is scored when choosing the best epoch: ``tiled`` whole-image prediction as test
scoring does it (engine.training.validation_scores, since commit ee37669); results made before
that scored 128² crops and are re-run."""


def settings_of(run: Run) -> dict:
    """The model settings a run's result was made with (with those of ``flops_of``, whose FLOPs
    set its budget), its ``TRAINING`` settings if it has any, and the validation protocol: a
    result whose settings differ from today's is re-run."""
    settings = {
        "method": METHODS[run.method],
        "flops_of": METHODS[run.flops_of] if run.flops_of else None,
        "validation": VALIDATION,
    }
    if run.method in TRAINING:
        settings["training"] = TRAINING[run.method]
    return settings


def split_settings(settings: dict) -> tuple[dict, dict]:
    """``settings`` split into ``ModelConfig`` and ``TrainConfig`` fields; a name of neither is an error."""
    model_fields = {f.name for f in fields(ModelConfig)}
    training_fields = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(settings) - model_fields - training_fields)
    if unknown:
        raise ValueError(
            f"{unknown} are settings of neither ModelConfig nor TrainConfig; "
            f"use names from {sorted(model_fields | training_fields)}"
        )
    model = {k: v for k, v in settings.items() if k in model_fields}
    return model, {k: v for k, v in settings.items() if k not in model}


def apply_settings(method: str, settings: dict) -> None:
    """Put ``settings`` on top of ``method``'s own in this process: ``ModelConfig`` fields on
    ``METHODS``, ``TrainConfig`` fields on ``TRAINING`` (for variants of stored runs)."""
    model, training = split_settings(settings)
    if model:
        METHODS[method] = {**METHODS[method], **model}
    if training:
        TRAINING[method] = {**TRAINING.get(method, {}), **training}


def _worker(
    run: Run, preset_name: str, models_dir: Path, threads: int | None, settings: dict | None = None
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    if settings:
        apply_settings(run.method, settings)
    return execute(run, PRESETS[preset_name], models_dir)


def run_all(
    todo: list[Run],
    preset_name: str,
    models_dir: Path,
    jobs: int,
    threads: int | None,
    settings: dict | None = None,
):
    """Yield (run, result) as runs finish, ``jobs`` at a time in worker processes (in this process
    when 1), in plan order; ``settings`` (``apply_settings``) are applied in the process that trains."""
    if jobs <= 1:
        for run in todo:
            print(f"[{time.strftime('%H:%M:%S')}] start {run.key}", flush=True)
            yield run, _worker(run, preset_name, models_dir, threads, settings)
        return
    pending, running = list(todo), {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            while pending and len(running) < jobs:
                run = pending.pop(0)
                print(f"[{time.strftime('%H:%M:%S')}] start {run.key}", flush=True)
                running[pool.submit(_worker, run, preset_name, models_dir, threads, settings)] = run
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield running.pop(future), future.result()


ARCHIVE = "archive/results-v1.md"
"""The first protocol's tables, beside the report that says where they are."""

READING = "## Reading these results"
"""Heading of the hand-written interpretation at the end of results.md, kept on regeneration."""


def _fmt_weights(ws: list[float]) -> str:
    return "(" + ", ".join(f"{w:.2f}" for w in ws) + ")"


def _late_best(rs: list[dict]) -> str:
    """How many runs picked their best epoch in the last tenth of training."""
    late = sum(1 for r in rs if r["best_epoch"] is not None and r["best_epoch"] > 0.9 * r["epochs"])
    return f"{late}/{len(rs)}"


def write_report(results: dict, preset_name: str, preset: Preset, out: Path, command: str) -> None:
    """results.md: per cell, per-class IoU/Dice and mIoU (mean ± sample std over folds × seeds),
    compute, branches and weights; then each method's paired difference to U-Net."""
    rows: dict[tuple[str, str, str], list[dict]] = {}
    for r in results.values():
        rows.setdefault((r["dataset"], r["condition"], r["method"]), []).append(r)
    lines = [
        "# Results: the paper's comparison on real data",
        "",
        f"Generated by `{command}` (preset `{preset_name}`: width {preset.width}, depth {preset.depth}, batch "
        f"{preset.batch_size}, patch {preset.patch_size}², epochs {preset.epochs}, Adam 1e-3 constant, min-max "
        "normalisation, flips/90° rotations; 10% of each training fold held out for choosing the best epoch by "
        "validation mIoU). Seeds are independent of the fold; `n` = folds × seeds. Budgets are optimiser steps: "
        "equal epochs, and `unet@flops-of-X` trains U-Net for the training FLOPs of X. Raw figures: "
        f"`results.json`. Machine: {machines(results)}, "
        "one torch thread per run; `train s` is wall-clock on a machine shared with other work (noisy). "
        "Low-light conditions: "
        + "; ".join(
            f"`{k}` = Poisson shot noise at {v.photons:g} photons/pixel plus Gaussian read noise "
            f"σ = {v.read_noise:g} e⁻ (seed 10000 + image index)"
            for k, v in CONDITIONS.items()
            if v
        )
        + ". Scores are % (mean ± sample std)."
        + (f" The first protocol's tables are in `{ARCHIVE}`." if (out / ARCHIVE).exists() else ""),
        "",
    ]
    for dataset, names in CLASS_NAMES.items():
        for condition in CONDITIONS:
            keys = sorted(k for k in rows if k[0] == dataset and k[1] == condition)
            if not keys:
                continue
            lines += [f"## {dataset}, {condition}", ""]
            head = (
                "| method | n | " + " | ".join(f"IoU {n}" for n in names) + " | mIoU | mDice | epochs | "
                "best epoch in last tenth | GFLOP/step | train PFLOP | train s | branch mIoU (net1, net2 on "
                "t1..tC) | ensemble weights, learned (first run) |"
            )
            lines += [head, "|" + "---|" * (head.count("|") - 1)]
            for key in keys:
                rs = sorted(rows[key], key=lambda r: (r["fold"], r["seed"]))
                t = [r["test"] for r in rs]
                iou = [mean_std([x["iou"][k] for x in t]) for k in range(len(names))]
                n_branches = len(t[0]["branch_miou"])
                branch = (
                    ", ".join(
                        f"{np.mean([x['branch_miou'][b] for x in t]) * 100:.1f}" for b in range(n_branches)
                    )
                    if n_branches > 1
                    else ""
                )
                weights = (
                    _fmt_weights(rs[0]["ensemble_weights"]) if len(rs[0]["ensemble_weights"]) > 1 else ""
                )
                lines.append(
                    f"| {key[2]} | {len(rs)} | "
                    + " | ".join(iou)
                    + f" | **{mean_std([x['miou'] for x in t])}** | "
                    f"{mean_std([x['mdice'] for x in t])} | {np.mean([r['epochs'] for r in rs]):.0f} | "
                    f"{_late_best(rs)} | {rs[0]['step_gflop']:.2f} | {np.mean([r['train_pflop'] for r in rs]):.2f} | "
                    f"{np.mean([r['train_seconds'] for r in rs]):.0f} | {branch} | {weights} |"
                )
            lines.append("")
            lines += _difference_tables({key[2]: rows[key] for key in keys})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.md"
    previous = path.read_text() if path.exists() else ""
    lines += (
        _pooled_tables(results)
        + _ensemble_table(results)
        + _coverage_table(results, preset.largest_plan, preset.plans[preset.largest_plan])
    )
    notes = previous[previous.index(READING) :] if READING in previous else ""  # hand-written, kept
    path.write_text("\n".join(lines) + "\n" + notes)


def _pooled_rows(results: dict, keys: set[str] | None = None) -> list[str]:
    """Each change against what it changes over the runs of ``keys`` (all runs if ``None``), one
    pair per set, fold and seed, best mean first. Rows: change, sets, pairs, mean, interval, verdict."""
    test: dict[str, dict[tuple, float]] = {}
    for key, r in results.items():
        if keys is None or key in keys:
            pair = (r["dataset"], r["condition"], r["fold"], r["seed"])
            test.setdefault(r["method"], {})[pair] = r["test"]["miou"]
    rows = []
    for method in SINGLE_CHANGES + ON_PRODUCT + [PRODUCT_METHOD]:
        base = test.get(_paper_baseline(method) or "", {})
        d = paired_difference(test.get(method, {}), base)
        if d:
            sets = len({pair[:2] for pair in test[method].keys() & base.keys()})
            rows.append(
                (d[0], f"| {method} − {_paper_baseline(method)} | {sets} | {d[3]} | {difference_cells(d)} |")
            )
    return [row for _, row in sorted(rows, key=lambda item: -item[0])]


def _pooled_tables(results: dict) -> list[str]:
    """The screen pooled (fold 0 of the screened cells, both seeds), then every run pooled."""
    head = ["| change | sets | pairs | mean | 95% interval | verdict |", "|---|---|---|---|---|---|"]
    lines = []
    screened = PRESETS["cpu"].plans["screen"] + [r for seed in (0, 1) for r in _screened(RETIRED, seed)]
    screen = _pooled_rows(results, {r.key for r in screened})
    if screen:
        cells = ", ".join(f"{d} {c}" for d, c in HEADLINE_CELLS[1:])
        intro = (
            f"Each change against what it changes on the screen's runs ({cells}; fold 0, seeds 0 and 1), "
            "paired by cell and seed, mIoU points, 95% t interval, best mean first:"
        )
        lines += ["## The screen, pooled", "", intro, "", *head, *screen, ""]
    every = _pooled_rows(results)
    if every:
        intro = (
            "Each change against what it changes on every run made so far (the screen and `--plan full`: "
            "all sets, folds and seeds), paired by set, fold and seed, mIoU points, 95% t interval, best mean "
            "first. Sets differ in spread, so read it beside each set's own table:"
        )
        lines += ["## Every change over every set, pooled", "", intro, "", *head, *every, ""]
    return lines


def _coverage_table(results: dict, plan_name: str, plan: list[Run]) -> list[str]:
    """How much of ``plan`` (``--plan <plan_name>``) has run: per set, runs done of planned, and each
    method that still has runs to make, with its done/planned."""
    rows = []
    for d, c in SETS:
        runs = [r for r in plan if (r.dataset, r.condition) == (d, c)]
        if not runs:
            continue
        planned: dict[str, list[bool]] = {}
        for r in runs:
            planned.setdefault(r.label, []).append(r.key in results)
        missing = ", ".join(f"{m} {sum(v)}/{len(v)}" for m, v in planned.items() if not all(v))
        done = sum(sum(v) for v in planned.values())
        rows.append(f"| {d} {c} | {done}/{len(runs)} | {missing or 'none'} |")
    return [
        "## Still to run",
        "",
        (
            f"Runs of `--plan {plan_name}` made so far, per set; the methods with runs still to make, with their "
            "done/planned (the harness resumes where it stopped):"
        ),
        "",
        "| set | done/planned | methods with runs still to make |",
        "|---|---|---|",
        *rows,
        "",
    ]


def _paper_baseline(method: str) -> str | None:
    """What a method is compared with beside U-Net: a change of the paper's CellPrep with the
    paper's CellPrep, a method made on top of the combination (``ON_PRODUCT``) with the combination."""
    if method in ON_PRODUCT:
        return PRODUCT_METHOD
    return "cellprep" if method.startswith("cellprep-") else None


def _difference_tables(runs: dict[str, list[dict]]) -> list[str]:
    """The paired-difference tables of one cell (``runs``: each method's results): each method
    against U-Net at equal epochs, against U-Net at its FLOPs, and each change against the
    method it changes."""
    test = {m: {(r["fold"], r["seed"]): r["test"]["miou"] for r in rs} for m, rs in runs.items()}
    tables: dict[str, list[str]] = {
        "Paired difference to `unet` (same fold and seed)": [],
        "At equal compute: paired difference to `unet@flops-of-<method>` (U-Net trained on the method's "
        "FLOPs; same fold and seed)": [],
        "Each change against what it changes: paired difference to the paper's `cellprep` (to "
        f"`{PRODUCT_METHOD}` for {', '.join(f'`{m}`' for m in ON_PRODUCT)}; same fold and seed)": [],
    }
    unet_title, compute_title, change_title = tables
    for method in sorted(runs):
        if method == "unet":
            continue
        baselines = [
            (unet_title, test.get("unet")),
            (compute_title, test.get(f"unet@flops-of-{method}")),
            (change_title, test.get(_paper_baseline(method) or "")),
        ]
        for title, baseline in baselines:
            row = _difference_row(method, paired_difference(test[method], baseline) if baseline else None)
            tables[title] += [row] if row else []
    lines = []
    for title, table in tables.items():
        if table:
            head = ["| method | pairs | mean | 95% interval | verdict |", "|---|---|---|---|---|"]
            lines += [f"{title}, mIoU points, 95% t interval:", "", *head, *table, ""]
    return lines


def _difference_row(method: str, d: tuple[float, float, float, int] | None) -> str | None:
    """A row of a paired-difference table (``paired_difference``), ``None`` without pairs."""
    return None if d is None else f"| {method} | {d[3]} | {difference_cells(d)} |"


def _ensemble_table(results: dict) -> list[str]:
    """Whether the learned ensemble adds to its branches: per CellPrep method, over all its runs
    (one pair per set, fold and seed), the ensemble's test mIoU against its best branch (picked on
    test, so an upper bound on choosing one branch) and against network 1's branch, and how far the
    learned ensemble weights moved from their initial values."""
    runs: dict[str, list[dict]] = {}
    for r in results.values():
        if len(r["test"]["branch_miou"]) > 1:
            runs.setdefault(r["method"], []).append(r)
    rows = []
    for method, rs in sorted(runs.items()):
        keys = [(r["dataset"], r["condition"], r["fold"], r["seed"]) for r in rs]
        ensemble = {k: r["test"]["miou"] for k, r in zip(keys, rs)}
        best = {k: max(r["test"]["branch_miou"]) for k, r in zip(keys, rs)}
        net1 = {k: r["test"]["branch_miou"][0] for k, r in zip(keys, rs)}
        d_best, d_net1 = paired_difference(ensemble, best), paired_difference(ensemble, net1)
        if d_best is None:  # fewer than two runs (both differences pair the same runs)
            continue
        below = sum(ensemble[k] < best[k] - 0.01 for k in keys)
        moved = np.median(
            [
                max(abs(w - w0) for w, w0 in zip(r["ensemble_weights"], r["initial_ensemble_weights"]))
                for r in rs
            ]
        )
        rows.append(
            f"| {method} | {len(rs)} | {difference_cells(d_best)} | {below}/{len(rs)} | "
            f"{difference_cells(d_net1)} | {moved:.2f} |"
        )
    if not rows:
        return []
    return [
        "## The ensemble against its branches",
        "",
        (
            "Each CellPrep method over all its runs (one pair per set, fold and seed), test mIoU points, 95% t "
            "interval: the ensemble against its best branch (picked on test: an upper bound on what choosing "
            "one branch could give) and against network 1's branch; how many runs the ensemble falls more "
            "than 1 point below its best branch; and the median over runs of the largest change of an "
            "ensemble weight from its initial value:"
        ),
        "",
        (
            "| method | runs | − best branch | 95% interval | verdict | > 1 point below the best branch | "
            "− network 1's branch | 95% interval | verdict | weights moved |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument(
        "--plan", default="screen", help="which list of runs: screen, headline, full (gpu for gpu-300)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--models", type=Path, default=REPO / "runs" / "models")
    parser.add_argument("--only", nargs="*", help="run only keys containing one of these strings")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--jobs", type=int, help="runs trained at once, each in its own process (default: the preset's)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.plan not in preset.plans:
        parser.error(f"preset {args.preset} has the plans {sorted(preset.plans)}, not {args.plan!r}")
    json_path = args.out / "results.json"
    stored = json.loads(json_path.read_text()) if json_path.exists() else {}
    results, superseded = stored.get("runs", {}), stored.get("superseded", [])
    plan_runs = {
        r.key: r for plans in (p.plans for p in PRESETS.values()) for plan in plans.values() for r in plan
    }
    for key in [
        k for k, r in results.items() if k in plan_runs and r.get("settings") != settings_of(plan_runs[k])
    ]:
        print(f"re-running {key}: made with other model settings (kept under 'superseded')", flush=True)
        superseded.append(results.pop(key))
    command = f"python -m benchmarks.paper.reproduce --preset {args.preset}"

    def save() -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps(
                {"preset": args.preset, "command": command, "runs": results, "superseded": superseded},
                indent=1,
            )
        )
        os.replace(tmp, json_path)
        write_report(results, args.preset, preset, args.out, command)

    if not args.report_only:
        args.models.mkdir(parents=True, exist_ok=True)
        plan = preset.plans[args.plan]
        todo = [
            r for r in plan if r.key not in results and (not args.only or any(s in r.key for s in args.only))
        ]
        for run, result in run_all(todo, args.preset, args.models, args.jobs or preset.jobs, args.threads):
            results[run.key] = result
            print(
                f"[{time.strftime('%H:%M:%S')}] done {run.key}: test mIoU {result['test']['miou']:.4f} "
                f"({result['epochs']} epochs, {result['train_seconds']:.0f} s)",
                flush=True,
            )
            save()
    write_report(results, args.preset, preset, args.out, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
