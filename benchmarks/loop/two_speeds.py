"""The two-speed loop against the forest anchor (issue #39): what a biologist sees at each budget.

For each set, light level and image (the held-out images of ``scribbles.held_out``; vnc-em: its
central 512² crop), the simulated annotator's strokes (``scribbles.case_strokes``) are painted;
then, timed in the same run:

- **forest**: ``scribbles.run_forest`` (ilastik's method: scikit-learn's 100-tree forest on
  ``multiscale_basic_features``), its time from strokes to the whole image's labels;
- **ours**: the Train dock's job, ``engine.training.two_speed.two_speed_job``, fine-tuning the
  bundled model with the dock's settings and validation share, the whole image as its preview. The
  clock starts at Train and counts only time inside the job (the benchmark's scoring between
  events is excluded). At each budget the score is that of the last preview shown by then
  (``None`` before the first); ``kept`` scores the returned model (network + classifier at the
  chosen weight) on the whole image, as ``cellprep predict`` would.

mIoU is over the whole image against its full ground truth; differences ours − forest are paired
over images (mean and 95% t interval). Results go to ``--out``.json after every case (a re-run
skips cases already there), then ``--out``.md.

    python -m benchmarks.loop.two_speeds --sets nist-phase --conditions clean --images 1 --budgets 2 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import datasets, report
from benchmarks.loop import scribbles
from napari_cellprep.engine.checkpoint import load_default
from napari_cellprep.engine.events import EpochEnd, StepEnd
from napari_cellprep.engine.prediction.inference import predict
from napari_cellprep.engine.threads import gui_torch_threads
from napari_cellprep.engine.training.data import split_validation
from napari_cellprep.engine.training.live import PreviewReady, painted_items
from napari_cellprep.engine.training.plan import DEFAULT_VAL_FRACTION, training_settings
from napari_cellprep.engine.training.recipe import RunPlan
from napari_cellprep.engine.training.two_speed import ClassifierFitted, EnsembleChosen, two_speed_job

BUDGETS = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0)
OUT = scribbles.REPO / "docs" / "results" / "loop" / "two-speeds"


def run_ours(image, labels, mask, info, init, budgets) -> dict:
    """One press of Train: the two-speed job until the largest budget."""
    num_classes = info.config.num_classes
    start = time.perf_counter()
    items = painted_items(image, labels, rgb=False, in_channels=1, normalization=info.normalization,
                          class_names=info.class_names)
    train, val = split_validation(items, DEFAULT_VAL_FRACTION, 0)  # held-out strokes choose the weight
    config = training_settings(True, seconds=max(budgets))
    plan = RunPlan(info, config, tuple(train), tuple(val), init)  # the dock's job, unchecked
    job = two_speed_job(plan, preview=image, threads=gui_torch_threads())
    clock = time.perf_counter() - start
    previews, chosen, steps, fitted = [], [], 0, None
    while True:
        t0 = time.perf_counter()
        try:
            event = next(job)
        except StopIteration as end:
            clock += time.perf_counter() - t0
            result = end.value
            break
        clock += time.perf_counter() - t0
        if isinstance(event, ClassifierFitted):
            fitted = {"t": clock, "held_out": event.held_out}
        elif isinstance(event, EnsembleChosen):
            chosen.append({"t": clock, "epoch": event.epoch, "weight": event.weight, "which": event.which,
                           "held_out": {str(w): v for w, v in event.held_out.items()}})
        elif isinstance(event, PreviewReady):
            previews.append({"t": clock, "epoch": event.epoch, **scribbles.miou(event.labels, mask, num_classes)})
        elif isinstance(event, StepEnd):
            steps += 1
        elif isinstance(event, EpochEnd):
            pass
    kept = predict(result.model, image, outputs=())
    at_budget = {}
    for budget in budgets:
        seen = [p for p in previews if p["t"] <= budget]
        at_budget[str(budget)] = seen[-1]["miou"] if seen else None
    return {"clock_s": clock, "steps": steps, "epochs_run": result.epochs_run, "fitted": fitted,
            "first_preview": previews[0]["t"] if previews else None, "preview": at_budget,
            "previews": previews, "chosen": chosen, "weight": result.model.classifier.weight,
            "kept": scribbles.miou(kept.labels, mask, num_classes)["miou"]}


def paired(a: list[float], b: list[float]) -> str:
    """mean difference a − b and its 95% t interval over pairs, or "n/a"."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if d.size < 2:
        return f"{d.mean():+.3f}" if d.size else "n/a"
    from scipy import stats

    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    verdict = "" if d.mean() - half > 0 or d.mean() + half < 0 else " n.d."
    return f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]{verdict}"


def write_report(results: dict, out: Path) -> None:
    budgets = results["budgets"]
    lines = [f"# Two speeds against the forest\n\n`{results['command']}`\n",
             "Mean mIoU over images at each budget (s), ours (last preview shown by then) and the forest "
             "(its own time: features, fit, prediction); ours − forest paired over images with its 95% t "
             "interval (n.d.: not distinguishable). `kept`: the returned model on the whole image.\n",
             "| set | light | n | forest (s) | " + " | ".join(f"{b:g} s" for b in budgets)
             + " | kept | first answer (s) | chosen |",
             "|" + "---|" * (len(budgets) + 7)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for case in results["cases"].values():
        groups.setdefault((case["set"], case["condition"]), []).append(case)
    for (dataset, condition), cases in groups.items():
        forest = [c["forest"]["miou"] for c in cases]
        cells = []
        for b in budgets:
            ours = [c["ours"]["preview"][str(b)] or 0.0 for c in cases]
            cells.append(f"{np.mean(ours):.3f} ({paired(ours, forest)})")
        kept = [c["ours"]["kept"] for c in cases]
        chosen = ", ".join(sorted({c["ours"]["chosen"][-1]["which"] for c in cases if c["ours"]["chosen"]}))
        lines.append(
            f"| {dataset} | {condition} | {len(cases)} | {np.mean(forest):.3f} "
            f"({np.mean([c['forest']['seconds'] for c in cases]):.1f}) | " + " | ".join(cells)
            + f" | {np.mean(kept):.3f} ({paired(kept, forest)}) | "
            f"{np.mean([c['ours']['first_preview'] for c in cases]):.2f} | {chosen} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(scribbles.SETS))
    parser.add_argument("--conditions", nargs="+", default=list(datasets.CONDITIONS))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS))
    parser.add_argument("--strokes", type=int, default=60)
    parser.add_argument("--brush", type=int, default=3)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = args.out.with_suffix(".json")
    results = json.loads(path.read_text()) if path.exists() else {"cases": {}}
    results.update(budgets=args.budgets, command="python -m benchmarks.loop.two_speeds " + " ".join(argv or []),
                   provenance=report.provenance())
    base = load_default()
    for dataset in args.sets:
        for condition in args.conditions:
            for index in scribbles.held_out(dataset)[: args.images]:
                key = f"{dataset}/{condition}/{index}"
                if key in results["cases"]:
                    continue
                image, mask, name, names, strokes, labels = scribbles.painted_case(dataset, condition, index, args)
                info, init = scribbles.model_info("finetune", base, names)
                forest = scribbles.run_forest(image, labels, mask, len(names))
                ours = run_ours(image, labels, mask, info, init, args.budgets)
                results["cases"][key] = {"set": dataset, "condition": condition, "image": name,
                                         "forest": {k: forest[k] for k in ("miou", "seconds")}, "ours": ours}
                print(f"{key}: forest {forest['miou']:.3f} ({forest['seconds']:.1f} s); ours "
                      + " ".join(f"{b}s {v if v is None else round(v, 3)}" for b, v in ours["preview"].items())
                      + f" kept {ours['kept']:.3f} w {ours['weight']}", flush=True)
                path.write_text(json.dumps(results, indent=1))
    write_report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
