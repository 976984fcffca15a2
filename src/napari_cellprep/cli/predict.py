"""``cellprep predict``: segment images into class-index label TIFFs (and intermediates)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..engine.checkpoint import LoadedModel
from ..engine.devices import describe_device
from ..engine.inference import OUTPUTS, Prediction, predict
from ..engine.io import list_images, write_image
from ..engine.sources import open_image
from .common import (
    add_inference_options,
    add_model_options,
    inference_options,
    load_model_option,
    refuse_existing,
)
from .predict_zarr import add_zarr_arguments, run_zarr, wants_zarr

INTERMEDIATES = ("filters", "translated", "probabilities", "branch_probabilities", "disagreement")

HELP = "segment images into label TIFFs"
DESCRIPTION = (
    "Segment images (files, zarr/OME-Zarr stores or folders) and write <stem>_labels.tif class-index "
    "images to --out, or, with --out NAME.zarr, a zarr store written block by block (any image size)."
)


def _arrays(prediction: Prediction) -> dict[str, np.ndarray]:
    return {"labels": prediction.labels} | {
        name: getattr(prediction, name) for name in INTERMEDIATES if getattr(prediction, name) is not None
    }


def _expected_outputs(loaded: LoadedModel, intermediates: bool) -> tuple[str, ...]:
    if not intermediates:
        return ("labels",)
    if loaded.info.config.architecture != "cellprep":  # a plain U-Net: no filters, one branch
        return ("labels", "probabilities")
    return ("labels",) + INTERMEDIATES


def run(args: argparse.Namespace) -> int:
    """Write ``<stem>_labels.tif`` (and intermediates if asked) per image, or a zarr store."""
    if wants_zarr(args):
        return run_zarr(args, OUTPUTS if args.save_intermediates else ())
    paths = list_images(args.inputs)
    loaded = load_model_option(args.model, args.device)
    out = Path(args.out)
    kinds = _expected_outputs(loaded, args.save_intermediates)
    targets = [(path, {kind: out / f"{path.stem}_{kind}.tif" for kind in kinds}) for path in paths]
    refuse_existing([p for _, files in targets for p in files.values()], args.overwrite)
    print(f"model {loaded.label} on {describe_device(loaded.device)}")
    options = inference_options(args)
    for path, files in tqdm(targets, unit="image", disable=None):
        prediction = predict(
            loaded, open_image(path).array, outputs=OUTPUTS if args.save_intermediates else (), **options
        )
        arrays = _arrays(prediction)
        for kind, target in files.items():
            array = arrays[kind] if kind == "labels" else arrays[kind].astype(np.float32, copy=False)
            write_image(target, array, args.overwrite)
        tqdm.write(f"{path} -> {files['labels']}")
    print(f"wrote {len(paths)} label image(s) to {out}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cellprep predict``."""
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the outputs, or NAME.zarr for a zarr store"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--save-intermediates",
        action="store_true",
        help="also write float32 TIFFs <stem>_<output>.tif of " + ", ".join(INTERMEDIATES),
    )
    add_model_options(parser)
    add_inference_options(parser)
    add_zarr_arguments(parser)
