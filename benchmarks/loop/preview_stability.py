"""How much does the Train dock's live preview swing from one epoch to the next, and what calms it?

In the scribbles benchmark (``docs/results/scribbles.md``) the preview of one image can move by 0.2 mIoU
between consecutive epochs (nist-phase image 95: 0.50-0.91), so what the user sees at 30 s is
partly luck. For a few scribbles cases (same images, light levels and 60 strokes), this
fine-tunes the bundled model with the dock's settings for ``--epochs`` epochs and scores every
previewed model on the whole image. A variant (``--tag``) changes the dock's settings:

- ``--refresh-batches N``: the BatchNorm statistics re-estimated on N batches of patches at each
  epoch's end instead of ``training.REFRESH_BATCHES`` (2);
- ``--fixed-refresh``: re-estimated on the same patches at every epoch (the first epoch's);
- ``--set KEY=VALUE``: any setting of the scribbles benchmark (``learning_rate``,
  ``average_weights`` …).

Step-based (the clock does not stop training), so the machine's load changes only the seconds.
Per case it prints the epoch scores and the mean, the spread (std) and the mean absolute change
between consecutive epochs over epochs 3 to the end, and adds them to ``--out`` (JSON)::

    python -m benchmarks.loop.preview_stability --tag now --out /tmp/stability.json
    python -m benchmarks.loop.preview_stability --tag refresh8 --refresh-batches 8 --out /tmp/stability.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.loop import scribbles as S
from napari_cellprep.engine.checkpoint import load_default
from napari_cellprep.engine.training import loop as training

CASES = ["nist-phase/very-low-light/95", "nist-phase/clean/95", "isbi2012-membrane/low-light/11",
         "vnc-em/very-low-light/4"]


class Strokes:
    """The scribbles benchmark's annotator settings (its defaults)."""

    seed, strokes, brush, length = 0, 60, 3, 30


def on_screen(previews: list[dict], epochs: int) -> list[float]:
    """The mIoU of the preview on screen at the end of each epoch 1..``epochs``: the last one shown
    by then (the dock previews only the epochs it keeps, e.g. with ``select_on_strokes``)."""
    shown, scores = None, []
    ordered = iter(sorted(previews, key=lambda p: p["epoch"]))
    upcoming = next(ordered, None)
    for epoch in range(1, epochs + 1):
        while upcoming is not None and upcoming["epoch"] <= epoch:
            shown, upcoming = upcoming["miou"], next(ordered, None)
        if shown is not None:
            scores.append(shown)
    return scores


def fix_refresh_patches() -> None:
    """Re-estimate the BatchNorm statistics on the first epoch's refresh patches at every epoch."""
    adapt, calls = training.adapt_batch_norm, []

    def fixed(model, batches):
        calls.append(None)
        if len(calls) == 1:  # AdaBN before the first step: as is
            return adapt(model, batches)
        if len(calls) == 2:
            fixed.batches = [b.clone() for b in batches]
        return adapt(model, iter(fixed.batches))

    training.adapt_batch_norm = fixed


def summary(scores: list[float]) -> dict:
    later = np.asarray(scores[3:])
    return {"mean": float(later.mean()), "std": float(later.std(ddof=1)),
            "mean_abs_change": float(np.abs(np.diff(later)).mean()), "min": float(later.min())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default="now", help="the variant's name in --out")
    parser.add_argument("--refresh-batches", type=int, default=training.REFRESH_BATCHES)
    parser.add_argument("--fixed-refresh", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    parser.add_argument("--cases", nargs="+", default=CASES, metavar="SET/CONDITION/INDEX")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    S.override("threads", str(args.threads))
    training.REFRESH_BATCHES = args.refresh_batches
    if args.fixed_refresh:
        fix_refresh_patches()
    for item in args.overrides:
        S.override(*item.split("=", 1))
    base = load_default()
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    for case in args.cases:
        dataset, condition, index = case.split("/")
        image, mask, _, names, _, labels = S.painted_case(dataset, condition, int(index), Strokes)
        info, init = S.model_info("finetune", base, names)
        run = S.train_run(image, labels, mask, info, init, seconds=1e9, epochs=args.epochs)
        scores = on_screen(run["previews"], run["epochs_run"])
        row = {"scores": scores, **summary(scores), "steps": run["steps"]}
        out.setdefault(args.tag, {})[case] = row
        args.out.write_text(json.dumps(out, indent=1))
        print(f"{args.tag} {case}: mean {row['mean']:.3f} std {row['std']:.3f} "
              f"|change| {row['mean_abs_change']:.3f} min {row['min']:.3f}  "
              + " ".join(f"{s:.2f}" for s in scores), flush=True)


if __name__ == "__main__":
    main()
