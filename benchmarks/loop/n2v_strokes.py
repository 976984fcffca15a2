"""Does the Noise2Void term (issue #10 §1) help a new model learn from a few strokes? Step-based.

For each case (a very-low-light image of ``benchmarks/loop/scribbles.py``: the same image, low light
and 60 simulated strokes, made by its functions), a new model is trained from scratch on the
strokes through the Train dock's code path (``scribbles.train_run``: ``painted_items``, 20 % of
the painted pixels held out, the best epoch by them returned; the dock's from-scratch settings)
for ``--steps`` optimiser steps (the dock's epochs of about one pass, here one step each: only
their count changes), with W = 0 (the dock's model, no denoise head) and with W = ``--weight``
(a denoise head; ``TrainConfig.self_supervised_share`` of each batch anywhere in the image), for
each ``--seeds`` (weights, patches and the held-out split; the strokes stay the same). Scored
on the weights after the last step (eval mode), and on the model the dock returns (the best
epoch by the held-out strokes): mIoU over the whole image against its full ground truth, and for
W > 0 the denoise head's output's mean squared error to the clean image, beside the noisy
input's (both normalised as the model normalises its input). The clean reference is the degradation's
expected value: the un-degraded image scaled to the case's mean photon count (no Poisson draw,
no read noise), normalised with the noisy image's statistics, so that a perfect denoiser of the
input the model sees scores 0.

``--smoke`` prints, per case, the sizes of Eq. 1 and of the Noise2Void MSE on a first batch of
the initial model and the variance of the normalised input (choose W so that W × variance, the
Noise2Void MSE once the head has learnt the mean, is of the order of Eq. 1), and times 3 steps.

    OMP_NUM_THREADS=1 nice -n 19 python -m benchmarks.loop.n2v_strokes --smoke
    OMP_NUM_THREADS=1 nice -n 19 python -m benchmarks.loop.n2v_strokes --steps 40 --weight 300

The table goes to ``--out``.md and ``--out``.json once every run is done; finished runs are kept
in ``--partial`` meanwhile (a re-run of the same command skips them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import datasets
from benchmarks.harness.datasets import load_case
from benchmarks.loop import scribbles
from napari_cellprep.engine.prediction.inference import predict
from napari_cellprep.engine.training.data import PatchSampler
from napari_cellprep.engine.training.live import painted_items
from napari_cellprep.engine.training.losses import training_loss
from napari_cellprep.engine.training.loop import initial_model

CASES = (("nist-phase", 20), ("isbi2012-membrane", 2))
CONDITION = "very-low-light"
STROKES = types.SimpleNamespace(seed=0, strokes=60, brush=3, length=30)
"""scribbles.py's default strokes (its ``--seed``, ``--strokes``, ``--brush``, ``--length``)."""


def clean_reference(dataset: str, index: int, noisy: np.ndarray, normalization) -> np.ndarray:
    """The clean image as the model would see the noisy one if it had no noise (see the docstring)."""
    clean, _, _ = load_case(dataset, "clean", index)
    level = datasets.CONDITIONS[CONDITION]
    x = clean.astype(np.float64)
    x = (x - x.min()) / (x.max() - x.min())
    expected = x * (level.photons / x.mean())
    return normalization.apply(expected, normalization.stats(noisy))


def configure(weight: float, seed: int) -> None:
    """The dock's from-scratch settings with the denoise head and weight (none at W = 0), one torch
    thread, preview off (the caller's ``train_run(preview=False)``)."""
    for key, value in (("threads", 1), ("seed", seed), ("denoise_head", int(weight > 0)),
                       ("self_supervised_weight", weight)):
        scribbles.override(key, str(value))


def start_sizes(dataset: str, index: int, seed: int) -> dict:
    """Eq. 1 and the Noise2Void MSE of the initial model (with a head) on a first batch, and the
    variance of the normalised input (the Noise2Void MSE of predicting its mean: the untrained
    head's output is off by about 1, which its bias unlearns within a few steps)."""
    configure(1.0, seed)
    image, _, _, names, _, labels = scribbles.painted_case(dataset, CONDITION, index, STROKES)
    info, _ = scribbles.model_info("scratch", None, names)
    settings = {**scribbles._dock(False), **scribbles.OVERRIDES}
    items = painted_items(image, labels, rgb=False, in_channels=1, normalization=info.normalization,
                          class_names=info.class_names)
    sampler = PatchSampler(items, settings["patch_size"], np.random.default_rng(seed), True,
                           settings["self_supervised_share"])
    images, targets, _ = sampler.sample(settings["batch_size"])
    model = initial_model(info.config, seed).train()
    with torch.no_grad():
        _, parts, _ = training_loss(model, torch.from_numpy(images), torch.from_numpy(targets), None, 1.0,
                                    torch.Generator().manual_seed(seed))
    variance = float(info.normalization.apply(image).var())
    return {"eq1": float(sum(parts[:-1])), "n2v_mse": float(parts[-1]), "input_variance": variance}


def one_run(dataset: str, index: int, weight: float, seed: int, steps: int) -> dict:
    configure(weight, seed)
    image, mask, name, names, _, labels = scribbles.painted_case(dataset, CONDITION, index, STROKES)
    info, _ = scribbles.model_info("scratch", None, names)
    run = scribbles.train_run(image, labels, mask, info, None, seconds=float("inf"), preview=False, epochs=steps,
                              last_weights=True)
    if run["steps"] != steps:
        raise RuntimeError(f"{run['steps']} steps were run, not {steps} (steps per epoch {run['steps_per_epoch']})")
    noisy = info.normalization.apply(image)
    clean = clean_reference(dataset, index, image, info.normalization)

    def score(model) -> dict:
        prediction = predict(model, image, outputs=("denoised",) if weight > 0 else ())
        denoised = prediction.denoised
        return {**scribbles.miou(prediction.labels, mask, len(names)),
                "denoised_mse": None if denoised is None else float(np.mean((denoised[0] - clean) ** 2))}

    best = [e["epoch"] for e in run["epochs"] if e["improved"]]
    return {
        "case": f"{dataset} {CONDITION} #{index}",
        "image": name,
        "weight": weight,
        "seed": seed,
        "steps": run["steps"],
        "steps_per_epoch": run["steps_per_epoch"],
        "best_epoch": best[-1] if best else None,
        **score(run.pop("last_model")),
        "returned": score(run.pop("model")),
        "noisy_mse": float(np.mean((noisy - clean) ** 2)),
        "seconds": run["clock_s"],
        "s_per_step_median": run["s_per_step_median"],
        "train_pixels": run["train_pixels"],
        "val_pixels": run["val_pixels"],
        "settings": {**scribbles._dock(False), **scribbles.OVERRIDES},
        "loadavg": os.getloadavg(),
    }


def write_report(results: dict, out: Path) -> None:
    runs = results["runs"]
    weight = results["weight"]
    sizes = "; ".join(
        f"{case}: Eq. 1 {s['eq1']:.2f}, the untrained head's Noise2Void MSE {s['n2v_mse']:.2f}, the input's "
        f"variance {s['input_variance']:.4f} (W × variance {weight * s['input_variance']:.1f})"
        for case, s in results["start_sizes"].items()
    )
    load = ", ".join(f"{v:.2f}" for v in results["loadavg"])
    lines = [
        "# The Noise2Void term from a few strokes (issue #10 §1), at equal steps",
        "",
        "Made by `benchmarks/loop/n2v_strokes.py` (its docstring says what runs):",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        (f"Machine: {results['machine']}; git {results['git_head']}. One torch thread under `nice -n 19`, beside "
         f"other people's benchmarks on both cores (load average {load} at the start): seconds are wall-clock "
         "under that load, which is why the comparison is at equal optimiser steps."),
        "",
        (f"W = {weight:g}, so that W × the input's variance (the Noise2Void MSE once the head's bias has "
         "learnt the mean, within a few steps) is of the order of Eq. 1 at the start; measured on the initial "
         f"model and a first batch (`--smoke`): {sizes}."),
        "",
        ("mIoU: over the whole image vs its full ground truth, of the weights after the last step and of "
         "the model the dock returns (the best epoch by the held-out strokes; epoch = step here). MSE: to "
         "the clean image normalised as the model normalises the noisy input (0..1 units); 'denoised' is "
         "the denoise head's output (W > 0 only), 'noisy' the input itself. seconds: the dock's clock "
         "(data preparation, steps and the scoring of the held-out strokes after each epoch)."),
        "",
        ("| case | W | seed | steps | mIoU | denoised MSE to clean | noisy MSE to clean | dock's pick: epoch, "
         "mIoU, denoised MSE | seconds |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def mse(value: float | None) -> str:
        return "–" if value is None else f"{value:.4f}"

    for r in runs:
        pick = r["returned"]
        lines.append(f"| {r['case']} | {r['weight']:g} | {r['seed']} | {r['steps']} | {r['miou']:.3f} | "
                     f"{mse(r['denoised_mse'])} | {r['noisy_mse']:.4f} | {r['best_epoch']}, {pick['miou']:.3f}, "
                     f"{mse(pick['denoised_mse'])} | {r['seconds']:.0f} |")
    lines += ["", "Mean (min–max) over seeds:", "",
              "| case | W | mIoU | denoised MSE | dock's pick: mIoU |", "|---|---|---|---|---|"]
    for case in dict.fromkeys(r["case"] for r in runs):
        for weight in dict.fromkeys(r["weight"] for r in runs):
            have = [r for r in runs if r["case"] == case and r["weight"] == weight]
            if have:
                errors = [r["denoised_mse"] for r in have if r["denoised_mse"] is not None]
                lines.append(f"| {case} | {weight:g} | {scribbles._fmt([r['miou'] for r in have])} | "
                             f"{scribbles._fmt(errors, 4) if errors else '–'} | "
                             f"{scribbles._fmt([r['returned']['miou'] for r in have])} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per run")
    parser.add_argument("--weight", type=float, default=None, help="W of the W > 0 runs (needed unless --smoke)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--smoke", action="store_true", help="loss sizes at the start, and 3 steps per case")
    parser.add_argument("--out", default=str(scribbles.REPO / "docs" / "n2v-strokes"))
    parser.add_argument("--partial", default="/tmp/n2v-strokes.partial.json", help="finished runs, until all are")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        for dataset, index in CASES:
            sizes = start_sizes(dataset, index, 0)
            scribbles.log(f"{dataset} #{index}: Eq. 1 {sizes['eq1']:.3f}, Noise2Void MSE {sizes['n2v_mse']:.5f}, "
                          f"input variance {sizes['input_variance']:.5f}: Eq. 1 / variance "
                          f"{sizes['eq1'] / sizes['input_variance']:.0f}")
            for weight in (0.0, args.weight or sizes["eq1"] / sizes["input_variance"]):
                r = one_run(dataset, index, weight, 0, 3)
                scribbles.log(f"  W {weight:g}: {r['seconds']:.1f} s for 3 steps, {r['s_per_step_median']:.2f} s/step, "
                              f"mIoU {r['miou']:.3f}, denoised MSE {r['denoised_mse']}, noisy MSE {r['noisy_mse']:.4f}")
        return 0
    if args.weight is None or not args.weight > 0:
        parser.error("--weight W > 0 is needed (see --smoke)")
    out = Path(args.out)
    partial = Path(args.partial)
    command = "OMP_NUM_THREADS=1 nice -n 19 python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(__file__, scribbles.REPO), *(argv or sys.argv[1:])])
    done = json.loads(partial.read_text()) if partial.exists() else {}
    results = done if done.get("command") == command else {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "git_head": scribbles._git_head(),
        "loadavg": os.getloadavg(),
        "weight": args.weight,
        "start_sizes": {f"{d} #{i}": start_sizes(d, i, 0) for d, i in CASES},
        "runs": [],
    }
    for dataset, index in CASES:
        for weight in (0.0, args.weight):
            for seed in args.seeds:
                key = (f"{dataset} {CONDITION} #{index}", weight, seed)
                if any((r["case"], r["weight"], r["seed"]) == key for r in results["runs"]):
                    continue
                scribbles.log(f"{key}")
                r = one_run(dataset, index, weight, seed, args.steps)
                scribbles.log(f"  mIoU {r['miou']:.3f}, denoised MSE {r['denoised_mse']}, noisy MSE "
                              f"{r['noisy_mse']:.4f}, {r['seconds']:.0f} s ({r['s_per_step_median']:.2f} s/step)")
                results["runs"].append(r)
                scribbles.save_json(results, partial)
    scribbles.save_json(results, out.with_suffix(".json"))
    write_report(results, out)
    partial.unlink()
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
