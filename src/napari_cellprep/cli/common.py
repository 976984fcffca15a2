"""What the ``cellprep`` verbs share: argument groups, reading their values, checks of outputs
and the progress display."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from ..engine.checkpoint import DEFAULT_MODEL, SUFFIX, LoadedModel, load_model
from ..engine.devices import PRECISIONS, precision_note, resolve_device
from ..engine.errors import CellprepError
from ..engine.events import Progress, drive
from ..engine.images.io import find_pairs
from ..engine.images.labels import LabelKind

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT)."""

R = TypeVar("R")


class CommandError(CellprepError):
    """A problem with the command's arguments; printed as one line."""


def options_given(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """``{keyword: value}`` for the options (``{option dest: keyword}``) the user gave; an option
    left out (``None``) keeps the engine's default."""
    return {key: getattr(args, name) for name, key in names.items() if getattr(args, name) is not None}


def pair_paths(
    images: str | None, masks: str | None, pairs: list[list[str]] | None, what: str
) -> list[tuple[Path, Path]]:
    """(image, labels) files from ``--images DIR --masks DIR`` and/or ``--pair IMAGE LABELS``."""
    if (images is None) != (masks is None):
        raise CommandError(f"{what}: give both an image folder and a mask folder")
    found = find_pairs(images, masks) if images is not None else []
    found += [(Path(image), Path(mask)) for image, mask in pairs or []]
    if not found:
        raise CommandError(f"{what}: no images given (use --images DIR --masks DIR or --pair IMAGE LABELS)")
    return found


def load_model_option(name: str | None, device_name: str) -> LoadedModel:
    """The model of ``--model`` (``default`` or left out: the bundled one) on ``--device``."""
    return load_model(name, resolve_device(device_name))


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Check every output before any work: never half a run that stops at an existing file."""
    if len(set(paths)) != len(paths):
        raise CommandError(
            "two inputs have the same file name without extension: their outputs would collide"
        )
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        raise CommandError(
            f"{existing[0]} already exists{more}; use --overwrite to replace, or choose another --out"
        )


def label_kind(args: argparse.Namespace) -> LabelKind:
    """The convention of the run's label files: painted values with ``--painted``."""
    return LabelKind.PAINTED if args.painted else LabelKind.CLASS_INDEX


def score(value: float | None) -> str:
    """A score with four decimals, ``n/a`` where there is none."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def with_progress_bar(events: Generator[Progress, None, R], unit: str) -> R:
    """Run an engine generator of ``Progress`` events with a progress bar on stderr."""
    with tqdm(unit=unit, disable=None, dynamic_ncols=True) as bar:

        def show(event: Progress) -> None:
            bar.total = event.total or None
            bar.update(event.done - bar.n)

        return drive(events, show)


# --- argument groups --------------------------------------------------------------------------


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--device``."""
    parser.add_argument(
        "--model",
        metavar=f"FILE{SUFFIX}",
        help=f"the model checkpoint; '{DEFAULT_MODEL}' (also when left out) is the bundled model "
        f"(a file named {DEFAULT_MODEL} is ./{DEFAULT_MODEL})",
    )
    add_device_option(parser)


def add_device_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--device``."""
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps"
    )


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """``--precision``."""
    parser.add_argument(
        "--precision",
        choices=["auto", *PRECISIONS],
        default="auto",
        help="what the network computes in: float32, or bfloat16 / float16 (autocast); auto (default): a "
        "16-bit type where the device runs it natively and it met the accuracy bar of "
        "docs/results/performance/precision.md, else float32. The output records which",
    )


def warn_if_emulated(precision: str, device: Any) -> None:
    """A line on stderr when a 16-bit ``precision`` is emulated on ``device`` (slower than float32)."""
    note = precision_note(precision, device)
    if note:
        print(f"cellprep: note: {note}", file=sys.stderr)


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """Tiling and the channel axis."""
    parser.add_argument("--tile", type=int, help="tile size in pixels for large images (default: 256)")
    parser.add_argument("--overlap", type=int, help="overlap between tiles in pixels (default: 64)")
    parser.add_argument("--batch-size", type=int, help="tiles per forward pass (default: 4)")
    add_channel_axis_option(parser)


def add_channel_axis_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--channel-axis``."""
    parser.add_argument(
        "--channel-axis",
        type=int,
        help="axis of the channels of multi-channel images (default: RGB(A) images are recognised, "
        "a multi-channel model finds the one axis of its channel count)",
    )


def inference_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword options for ``predict`` from the inference argument group."""
    return {"channel_axis": args.channel_axis} | options_given(
        args, {"tile": "tile", "overlap": "overlap", "batch_size": "batch_size"}
    )


def add_pair_options(parser: argparse.ArgumentParser) -> None:
    """``--images``/``--masks`` folders and repeatable ``--pair``."""
    parser.add_argument("--images", metavar="DIR", help="folder of images")
    parser.add_argument(
        "--masks",
        metavar="DIR",
        help="folder of masks, matched to images by file name stem: class indices 0..C-1, -1 = unlabelled",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("IMAGE", "LABELS"),
        help="one image and its mask of class indices, -1 = unlabelled (repeatable)",
    )
    parser.add_argument(
        "--painted",
        action="store_true",
        help="every label file of the run holds painted values, as a napari Labels layer does "
        "(0 = not annotated, v >= 1 = class v - 1) instead of class indices",
    )
