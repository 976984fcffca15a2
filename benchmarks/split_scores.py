"""Would a run's validation split have shown what its test split shows? The ensemble's and each
branch's mIoU of models saved by `reproduce.py --models`, on the validation and the test split of
the run each model was trained in (its name, e.g. ``nist-phase/clean/fold2/seed2/cellprep-product``).

    python benchmarks/split_scores.py runs/models/nist-phase_clean_fold2_seed2_cellprep-product.cellprep

Scores are % (test as `reproduce.py` scores it: whole images, tiled). One torch thread, CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from reproduce import CLASS_NAMES, PRESETS, evaluate, load_dataset, split

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument(
        "--preset", default="cpu", choices=sorted(PRESETS), help="the preset whose folds made the run"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for path in args.models:
        for part, s in split_scores(path, args.preset).items():
            branches = ", ".join(f"{b:.1f}" for b in s["branch_miou"])
            print(f"{path.name}  {part:<10}  ensemble {s['miou']:.1f}  branches ({branches})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
