"""Re-run stored runs of ``reproduce.py`` with a model or training setting changed, and compare.

    python -m benchmarks.paper.reproduce_variant nist-phase/very-low-light/fold0/seed1/unet ... \
        --set refresh_norm=true --out docs/results/variants/paper/X.json [--jobs 2] [--against cellprep]

Each key is run again by ``reproduce.execute`` with the ``ModelConfig`` or ``TrainConfig``
settings ``--set`` on top of the method's own, on the same split, seed, steps and torch thread
count (a CPU run's numbers depend on it; the harness runs each with one thread), ``--jobs`` at a
time in worker processes; checkpoints go to ``runs/variants/<out's name>/``. The JSON keeps, per
key, the test mIoU, best epoch and validation curve of the stored run and of the variant, and the
Markdown beside it their paired difference (and the variant's to each ``--against`` method's
stored runs on the same set, fold and seed; a later call without ``--against`` keeps the methods
of the earlier one, ``--against`` with no names clears them) and the mean change of validation mIoU between epochs
(from epoch 5 on). ``--rescore`` fills the per-class test IoU and branch mIoU of variant runs made
before the JSON kept them, by scoring the checkpoints they saved in ``--models`` on their test
fold (no training).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.harness import datasets, stats
from benchmarks.harness.report import command_line
from benchmarks.paper import reproduce
from napari_cellprep.engine.checkpoint import load_checkpoint


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


def _run_of(key: str) -> reproduce.Run:
    dataset, condition, fold, seed, label = key.split("/")
    method, _, flops_of = label.partition("@flops-of-")
    return reproduce.Run(dataset, condition, int(fold[4:]), int(seed[4:]), method, flops_of or None)


def rescore(key: str, models: Path) -> dict:
    """The test scores (``reproduce.evaluate``) of the checkpoint that run ``key`` saved in ``models``."""
    run = _run_of(key)
    path = models / (key.replace("/", "_") + ".cellprep")
    if not path.exists():
        raise SystemExit(
            f"no checkpoint {path} to rescore {key}: pass the --models folder the variant saved to"
        )
    items = datasets.load_dataset(run.dataset, run.condition)
    _, _, test = datasets.split(len(items), reproduce.PRESETS["cpu"].folds[run.dataset], run.fold)
    classes = len(datasets.CLASS_NAMES[run.dataset])
    return reproduce.evaluate(load_checkpoint(path), [items[i] for i in test], classes)


def _percent(values: list[float] | None) -> str:
    return ", ".join(f"{100 * v:.1f}" for v in values) if values else "–"


def against(runs: dict, stored: dict, methods: list[str]) -> dict[str, dict[str, float]]:
    """{method: {variant key: test mIoU of ``method``'s stored run on the same set, fold and seed}}."""
    return {
        m: {k: stored[s]["test"]["miou"] for k in runs if (s := k.rsplit("/", 1)[0] + "/" + m) in stored}
        for m in methods
    }


def report(runs: dict, settings: dict, command: str, others: dict | None = None) -> list[str]:
    """The Markdown lines: one row per run, then the paired difference of the test mIoU to the
    stored run and to each method of ``others`` (``against``)."""
    lines = [
        f"# Variant of the stored runs: {settings}",
        "",
        f"Made by `{command}`. Test mIoU and best epoch of the stored run and of the variant (same split,",
        "seed and steps); swing = mean |change| of validation mIoU between epochs, from epoch 5; test IoU",
        "per class and branch mIoU (network 1, then network 2 on each translated image), %.",
        "",
        (
            "| run | stored test | variant test | stored best | variant best | stored swing | variant swing | "
            "stored IoU per class | variant IoU per class | stored branch mIoU | variant branch mIoU |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in runs.items():
        s, v = r["stored"], r["variant"]
        lines.append(
            f"| {key} | {s['test']:.4f} | {v['test']:.4f} | {s['best_epoch']} | {v['best_epoch']} | "
            f"{s['swing']:.3f} | {v['swing']:.3f} | {_percent(s.get('iou'))} | {_percent(v.get('iou'))} | "
            f"{_percent(s.get('branch_miou'))} | {_percent(v.get('branch_miou'))} |"
        )
    pairs = {k: r["variant"]["test"] for k, r in runs.items()}
    rows = [
        reproduce._difference_row(f"variant − {name}", stats.paired_difference(pairs, base))
        for name, base in {
            "stored": {k: r["stored"]["test"] for k, r in runs.items()},
            **(others or {}),
        }.items()
    ]
    rows = [row for row in rows if row]
    if rows:
        lines += ["", "| | pairs | mean | 95% interval | verdict |", "|---|---|---|---|---|", *rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("keys", nargs="+", help="run keys of the stored results")
    parser.add_argument(
        "--set", nargs="+", required=True, metavar="NAME=VALUE", help="ModelConfig or TrainConfig settings"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once, each in its own process (default 1)"
    )
    parser.add_argument(
        "--against",
        nargs="*",
        metavar="METHOD",
        help="also pair the variant with these methods' stored runs (same set, fold and seed); "
        "left out, the earlier call's pairings stay; given with no names, they are cleared",
    )
    parser.add_argument("--results", type=Path, default=datasets.REPO / "docs" / "results" / "results.json")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write (a .md beside it)")
    parser.add_argument(
        "--models", type=Path, help="where checkpoints go (default: runs/variants/<the --out file's name>)"
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score the saved checkpoints of runs made without per-class scores",
    )
    args = parser.parse_args(argv)
    args.models = args.models or datasets.REPO / "runs" / "variants" / args.out.stem
    settings = {name: _value(value) for name, value in (item.split("=", 1) for item in args.set)}
    try:
        reproduce.split_settings(settings)
    except ValueError as error:
        parser.error(str(error))
    stored = json.loads(args.results.read_text())["runs"]
    missing = [k for k in args.keys if k not in stored]
    if missing:
        parser.error(f"not in {args.results}: {missing}")
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if previous.get("settings", settings) != settings:
        parser.error(
            f"{args.out} holds runs made with {previous['settings']}, not {settings}: give another --out"
        )
    runs = previous.get("runs", {})
    command = command_line("reproduce_variant.py", argv)
    if args.rescore:
        for key in args.keys:
            if key in runs and runs[key]["variant"].get("iou") is None:
                test = rescore(key, args.models)
                runs[key]["variant"] |= {"iou": test["iou"], "branch_miou": test["branch_miou"]}
                runs[key]["stored"] |= {k: stored[key]["test"].get(k) for k in ("iou", "branch_miou")}
                print(f"{key}: IoU per class {_percent(test['iou'])}", flush=True)
        _write(args.out, {**previous, "runs": runs, "rescored_by": command}, settings)
        return 0
    args.models.mkdir(parents=True, exist_ok=True)
    todo = [_run_of(key) for key in dict.fromkeys(args.keys) if key not in runs]
    threads = sorted({stored[run.key].get("torch_threads", 1) for run in todo})
    if len(threads) > 1:
        parser.error(f"the stored runs used {threads} torch threads: give the keys of each count separately")
    methods = list(previous.get("against", {})) if args.against is None else args.against

    def write() -> None:
        others = against(runs, stored, methods)
        _write(
            args.out, {"settings": settings, "command": command, "runs": runs, "against": others}, settings
        )

    for run, result in reproduce.run_all(
        todo, "cpu", args.models, args.jobs, threads[0] if threads else 1, settings
    ):
        key = run.key
        runs[key] = {"stored": summary(stored[key]), "variant": summary(result)}
        print(
            f"{key}: test {runs[key]['stored']['test']:.4f} -> {runs[key]['variant']['test']:.4f}", flush=True
        )
        write()
    write()  # also when every key had run before: the report gains the pairings
    return 0


def _write(out: Path, content: dict, settings: dict) -> None:
    """The JSON and, beside it, its Markdown report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(content, indent=1))
    lines = report(content["runs"], settings, content["command"], content.get("against"))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
