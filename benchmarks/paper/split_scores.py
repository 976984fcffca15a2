"""Would a run's validation split have shown what its test split shows? The ensemble's and each
branch's mIoU of models saved by `reproduce.py --models`, on the validation and the test split of
the run each model was trained in (its name, e.g. ``nist-phase/clean/fold2/seed2/cellprep-product``).

    python -m benchmarks.paper.split_scores runs/models/nist-phase_clean_fold2_seed2_cellprep-product.cellprep
    python -m benchmarks.paper.split_scores runs/models/*cellprep-product.cellprep --out docs/X.md

Scores are % (test as `reproduce.py` scores it: whole images, tiled). One torch thread, CPU. With
several models it also asks whether falling back to one branch would help: the output (the
ensemble, or one branch) that scores best on validation is "picked", and its test mIoU is paired
with the ensemble's over the models (95% t interval); ``--out`` writes that report as Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness.datasets import CLASS_NAMES, load_dataset, split
from benchmarks.harness.report import command_line, write_or_print
from benchmarks.harness.stats import difference_cells, paired_difference
from benchmarks.paper.reproduce import PRESETS, evaluate
from napari_cellprep.engine.checkpoint import LoadedModel, load_checkpoint


def run_splits(loaded: LoadedModel, preset: str = "cpu") -> tuple[str, dict[str, list]]:
    """The data set of the run a saved model was trained in (its name, as `reproduce.py` gives it)
    and that run's {"validation": items, "test": items}."""
    parts = loaded.info.name.split("/")
    if len(parts) != 5 or not parts[2].startswith("fold"):
        raise ValueError(
            f"{loaded.path} is named {loaded.info.name!r}, not a run of reproduce.py "
            "(set/condition/foldN/seedM/method)"
        )
    dataset, condition, fold = parts[:3]
    items = load_dataset(dataset, condition)
    _, val, test = split(len(items), PRESETS[preset].folds[dataset], int(fold[len("fold") :]))
    return dataset, {"validation": [items[i] for i in val], "test": [items[i] for i in test]}


def split_scores(path: Path, preset: str = "cpu") -> dict[str, dict]:
    """{"validation" | "test": {"miou": %, "branch_miou": [%, ...]}} of the model at ``path``."""
    loaded = load_checkpoint(path)
    dataset, parts = run_splits(loaded, preset)
    scores = {}
    for part, items in parts.items():
        result = evaluate(loaded, items, len(CLASS_NAMES[dataset]))
        scores[part] = {"miou": 100 * result["miou"], "branch_miou": [100 * b for b in result["branch_miou"]]}
    return scores


def picked_on_validation(scores: dict[str, dict]) -> tuple[str, float]:
    """The output that scores best on validation (``ensemble``, or ``branch k``: network 1's branch
    is ``branch 1``; ties go to the ensemble) and its test mIoU %."""
    val, test = ([s["miou"], *s["branch_miou"]] for s in (scores["validation"], scores["test"]))
    k = int(np.argmax(val))
    return ("ensemble" if k == 0 else f"branch {k}"), test[k]


def pick_report(scores: dict[str, dict], command: str) -> list[str]:
    """Per model, each output's validation and test mIoU and the pick; then picked − ensemble."""
    lines = [
        "# Falling back to one branch picked on validation: mIoU % of saved runs",
        "",
        f"`{command}`",
        "",
        "| model | validation: ensemble; branches | test: ensemble; branches | picked | picked on test |",
        "|---|---|---|---|---|",
    ]
    picked, ensemble = {}, {}
    for name, s in scores.items():
        cells = [
            f"{s[part]['miou']:.1f}; " + ", ".join(f"{b:.1f}" for b in s[part]["branch_miou"])
            for part in ("validation", "test")
        ]
        which, test = picked_on_validation(s)
        picked[(name,)], ensemble[(name,)] = test / 100, s["test"]["miou"] / 100
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {which} | {test:.2f} |")
    d = paired_difference(picked, ensemble)
    if d is not None:
        lines += [
            "",
            "| picked − ensemble, test | pairs | mean | 95% interval | verdict |",
            "|---|---|---|---|---|",
        ]
        lines.append(f"| | {d[3]} | {difference_cells(d)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument(
        "--preset", default="cpu", choices=sorted(PRESETS), help="the preset whose folds made the run"
    )
    parser.add_argument("--out", type=Path, help="the Markdown report of the pick (default: print it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scores = {}
    for path in args.models:
        scores[path.name] = split_scores(path, args.preset)
        for part, s in scores[path.name].items():
            branches = ", ".join(f"{b:.1f}" for b in s["branch_miou"])
            print(f"{path.name}  {part:<10}  ensemble {s['miou']:.1f}  branches ({branches})", flush=True)
    if len(scores) > 1 or args.out:
        command = command_line("split_scores.py", argv)
        write_or_print(pick_report(scores, command), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
