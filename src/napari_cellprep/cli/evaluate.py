"""``cellprep evaluate``: per-class IoU and Dice of a model against masks."""

from __future__ import annotations

import argparse
import json
import sys

from ..engine.devices import describe_device
from ..engine.images.io import read_image, read_mask
from ..engine.prediction.evaluation import evaluate_iter
from .common import (
    add_inference_options,
    add_model_options,
    add_pair_options,
    inference_options,
    label_kind,
    load_model_option,
    pair_paths,
    score,
    with_progress_bar,
)
from .train import MASK_RULES

HELP = "score a model against masks"
DESCRIPTION = (
    "Per-class IoU and Dice, their means and pixel counts, from one confusion matrix over all pixels."
)
EPILOG = MASK_RULES


def _print_table(report: dict) -> None:
    width = max(12, *(len(c["name"]) for c in report["classes"]))
    print(f"{len(report['images'])} image(s), {report['pixels']} pixels, model {report['model']}")
    print(f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}  {'true px':>11}  {'predicted px':>12}")
    for c in report["classes"]:
        print(
            f"{c['name']:<{width}}  {score(c['iou']):>7}  {score(c['dice']):>7}  "
            f"{c['true_pixels']:>11}  {c['predicted_pixels']:>12}"
        )
    print(f"{'mean':<{width}}  {score(report['miou']):>7}  {score(report['mdice']):>7}")


def run(args: argparse.Namespace) -> int:
    """Per-class IoU/Dice from one confusion matrix over all pairs; a table, or JSON."""
    pairs = pair_paths(args.images, args.masks, args.pair, "evaluation data")
    loaded = load_model_option(args.model, args.device)
    log = sys.stderr if args.json else sys.stdout
    print(f"model {loaded.label} on {describe_device(loaded.device)}", file=log)
    arrays = ((read_image(image), read_mask(mask)) for image, mask in pairs)
    names = [str(image) for image, _ in pairs]
    scoring = evaluate_iter(loaded, arrays, names=names, kind=label_kind(args), **inference_options(args))
    evaluation = with_progress_bar(scoring, "image")
    report = {
        "model": str(loaded.path) if loaded.path else loaded.label,
        "images": names,
        **evaluation.report(loaded.info.class_names),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cellprep evaluate``."""
    add_pair_options(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON to stdout")
    add_model_options(parser)
    add_inference_options(parser)
