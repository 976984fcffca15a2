"""Would another way of merging a CellPrep model's branches have segmented better? Saved models
of `reproduce.py --models` scored on their run's test (or, with `--split validation`, validation) split with:

- ``trained``: the model's own ensemble (the weighted sum of the branches' logits it was trained
  with: the labels `reproduce.py` scores);
- ``probabilities``: the same weights on the branches' class probabilities instead of their logits;
- ``vote``: each pixel takes the class most branches give it (ties: ``probabilities``).

    python -m benchmarks.paper.ensemble_rules runs/models/*cellprep-product.cellprep --out docs/X.md

Meant for ensembles with non-negative weights (the product's softmax, `fixed`). Prints mIoU % per
model and rule, and each rule − ``trained`` paired over the models with a 95%
t interval. Inference is tiled as `reproduce.py` scores test. One torch thread, CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness.datasets import CLASS_NAMES
from benchmarks.harness.report import command_line, write_or_print
from benchmarks.harness.stats import difference_cells, paired_difference
from benchmarks.paper.split_scores import run_splits
from napari_cellprep.engine.checkpoint import load_checkpoint
from napari_cellprep.engine.images.labels import LabelKind, to_targets
from napari_cellprep.engine.images.metrics import confusion_matrix, scores
from napari_cellprep.engine.prediction.evaluation import evaluate_iter

RULES = ("trained", "probabilities", "vote")


def merged_labels(
    labels: np.ndarray, branch_probabilities: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Each rule's labels (H, W) from the model's own ``labels`` and its branches' (S, C, H, W)."""
    mean = np.einsum("s,schw->chw", weights, branch_probabilities)
    c = branch_probabilities.shape[1]
    votes = np.stack([(branch_probabilities.argmax(1) == k).sum(0) for k in range(c)])
    votes = votes + mean / (weights.sum() + 1)  # < 1: breaks ties only
    return {"trained": labels, "probabilities": mean.argmax(0), "vote": votes.argmax(0)}


def rule_scores(path: Path, part: str = "test", preset: str = "cpu") -> dict[str, float]:
    """mIoU % of each rule on the ``part`` split of the run that saved the model at ``path``."""
    loaded = load_checkpoint(path)
    dataset, parts = run_splits(loaded, preset)
    c = len(CLASS_NAMES[dataset])
    confusion = {rule: np.zeros((c, c), np.int64) for rule in RULES}
    items = parts[part]
    scored = evaluate_iter(loaded, [(image, mask) for image, mask, _ in items], outputs=("branches",))
    for (_, mask, name), pair in zip(items, scored, strict=True):
        p = pair.prediction
        if p.branch_probabilities is None:
            raise ValueError(f"{path} has one branch: there is nothing to merge")
        target = to_targets(mask, LabelKind.CLASS_INDEX, mask.shape, name)
        for rule, labels in merged_labels(p.labels, p.branch_probabilities, p.ensemble_weights).items():
            confusion[rule] += confusion_matrix(labels, target, c)
    return {rule: 100 * scores(cm).miou for rule, cm in confusion.items()}


def report(results: dict[str, dict[str, float]], part: str, command: str) -> list[str]:
    """A Markdown table per model and the paired differences to ``trained``."""
    lines = [
        f"# Merging the branches: mIoU % on each run's {part} split",
        "",
        f"`{command}`",
        "",
        "| model | " + " | ".join(RULES) + " |",
        "|---|" + "---|" * len(RULES),
    ]
    lines += [
        f"| {name} | " + " | ".join(f"{r[rule]:.2f}" for rule in RULES) + " |" for name, r in results.items()
    ]
    lines += ["", "Each rule − `trained`, paired over the models, mIoU points, 95% t interval:", ""]
    lines += ["| rule | pairs | mean | 95% interval | verdict |", "|---|---|---|---|---|"]
    trained = {(name,): r["trained"] / 100 for name, r in results.items()}
    for rule in RULES[1:]:
        d = paired_difference({(name,): r[rule] / 100 for name, r in results.items()}, trained)
        if d is not None:
            lines.append(f"| {rule} | {d[3]} | {difference_cells(d)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--out", type=Path, help="Markdown report (default: print it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for path in args.models:
        results[path.name] = rule_scores(path, args.split)
        print(path.name, {rule: round(v, 2) for rule, v in results[path.name].items()}, flush=True)
    command = command_line("ensemble_rules.py", argv)
    write_or_print(report(results, args.split, command), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
