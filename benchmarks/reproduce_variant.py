"""Re-run stored runs of ``reproduce.py`` with a training setting changed, and compare.

    python benchmarks/reproduce_variant.py nist-phase/very-low-light/fold0/seed1/unet ... \
        --set refresh_norm=true --out docs/results-variants/X.json

Each key is run again by ``reproduce.execute`` with ``TrainConfig`` settings ``--set`` on top of
the method's own, on the same split, seed, steps and torch thread count (a CPU run's numbers
depend on it; the harness runs each with one thread); the JSON keeps, per key, the test mIoU, best
epoch and validation curve of the stored run and of the variant, and the Markdown beside it their
paired difference and the mean change of validation mIoU between epochs (from epoch 5 on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import reproduce


def _value(text: str):
    """A ``--set`` value: JSON (numbers, true/false, lists) where it parses, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def swing(curve: list[float], start: int = 4) -> float:
    """Mean absolute change of validation mIoU between consecutive epochs from epoch ``start + 1``."""
    c = np.asarray(curve[start:], dtype=float)
    return float(np.abs(np.diff(c)).mean()) if len(c) > 1 else 0.0


def summary(result: dict) -> dict:
    """What the comparison keeps of a run's result (per-class test IoU and branch mIoU where it has them)."""
    curve = result["curves"]["val_miou"]
    return {
        "test": result["test"]["miou"],
        "iou": result["test"].get("iou"),
        "branch_miou": result["test"].get("branch_miou"),
        "best_epoch": result["best_epoch"],
        "val": curve,
        "swing": swing(curve),
    }


def report(runs: dict, settings: dict, command: str) -> list[str]:
    """The Markdown lines: one row per run, then the paired difference of the test mIoU."""
    lines = [
        f"# Variant of the stored runs: {settings}",
        "",
        f"Made by `{command}`. Test mIoU and best epoch of the stored run and of the variant (same split,",
        "seed and steps); swing = mean |change| of validation mIoU between epochs, from epoch 5.",
        "",
        "| run | stored test | variant test | stored best | variant best | stored swing | variant swing |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in runs.items():
        s, v = r["stored"], r["variant"]
        lines.append(
            f"| {key} | {s['test']:.4f} | {v['test']:.4f} | {s['best_epoch']} | {v['best_epoch']} | "
            f"{s['swing']:.3f} | {v['swing']:.3f} |"
        )
    pairs = {k: r["variant"]["test"] for k, r in runs.items()}
    d = reproduce.paired_difference(pairs, {k: r["stored"]["test"] for k, r in runs.items()})
    if d:
        row = reproduce._difference_row("variant − stored", d)
        lines += ["", "| | pairs | mean | 95% interval | verdict |", "|---|---|---|---|---|", row]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("keys", nargs="+", help="run keys of the stored results")
    parser.add_argument("--set", nargs="+", required=True, metavar="NAME=VALUE", help="TrainConfig settings")
    parser.add_argument("--results", type=Path, default=reproduce.REPO / "docs" / "results.json")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write (a .md beside it)")
    parser.add_argument("--models", type=Path, default=reproduce.REPO / "runs" / "variants")
    args = parser.parse_args(argv)
    settings = {name: _value(value) for name, value in (item.split("=", 1) for item in args.set)}
    stored = json.loads(args.results.read_text())["runs"]
    missing = [k for k in args.keys if k not in stored]
    if missing:
        parser.error(f"not in {args.results}: {missing}")
    runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else {}
    command = "python benchmarks/reproduce_variant.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for key in args.keys:
        if key in runs:
            continue
        dataset, condition, fold, seed, label = key.split("/")
        method, _, flops_of = label.partition("@flops-of-")
        run = reproduce.Run(dataset, condition, int(fold[4:]), int(seed[4:]), method, flops_of or None)
        reproduce.TRAINING[method] = {**reproduce.TRAINING.get(method, {}), **settings}
        reproduce.torch.set_num_threads(stored[key].get("torch_threads", 1))
        result = reproduce.execute(run, reproduce.PRESETS["cpu"], args.models)
        runs[key] = {"stored": summary(stored[key]), "variant": summary(result)}
        print(
            f"{key}: test {runs[key]['stored']['test']:.4f} -> {runs[key]['variant']['test']:.4f}", flush=True
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"settings": settings, "command": command, "runs": runs}, indent=1))
        args.out.with_suffix(".md").write_text("\n".join(report(runs, settings, command)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
