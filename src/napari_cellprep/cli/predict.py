"""``cellprep predict``: segment images into class-index label TIFFs (and intermediates)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..engine.checkpoint import LoadedModel
from ..engine.devices import describe_device, resolve_precision
from ..engine.images.instances import (
    AUTO,
    find_boundary_class,
    find_instances,
    measure_instances,
    write_measurements,
)
from ..engine.images.io import check_writable, keep_apart, list_images, write_image
from ..engine.images.sources import open_image
from ..engine.prediction.inference import OUTPUTS, Prediction, predict
from .common import (
    CommandError,
    add_inference_options,
    add_model_options,
    add_precision_option,
    inference_options,
    load_model_option,
    refuse_existing,
    warn_if_emulated,
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


def _class_choice(text: str) -> int | str | None:
    """``--boundary-class``: an index, a name, ``none`` or ``auto``."""
    return None if text == "none" else int(text) if text.isdigit() else text


def run(args: argparse.Namespace) -> int:
    """Write ``<stem>_labels.tif`` (and intermediates if asked) per image, or a zarr store."""
    if wants_zarr(args):
        if args.instances:
            raise CommandError(
                "--instances writes TIFF and CSV files: give a folder as --out, not a zarr store"
            )
        return run_zarr(args, OUTPUTS if args.save_intermediates else ())
    paths = list_images(args.inputs)
    loaded = load_model_option(args.model, args.device)
    out = Path(args.out)
    kinds = _expected_outputs(loaded, args.save_intermediates) + (("instances",) if args.instances else ())
    targets = [(path, {kind: out / f"{path.stem}_{kind}.tif" for kind in kinds}) for path in paths]
    for path, files in targets if args.instances else ():
        files["measurements"] = out / f"{path.stem}_measurements.csv"
        find_boundary_class(loaded.info.class_names, args.boundary_class)  # a wrong name fails before work
    written = [p for _, files in targets for p in files.values()]
    check_writable(written[0])  # --out a folder (or one to make), not a file
    keep_apart(written, paths)
    refuse_existing(written, args.overwrite)
    precision = resolve_precision(args.precision, loaded.device)
    print(f"model {loaded.label} on {describe_device(loaded.device)} in {precision}")
    warn_if_emulated(precision, loaded.device)
    options = inference_options(args) | {"precision": precision}
    outputs = OUTPUTS if args.save_intermediates else ("disagreement",) if args.instances else ()
    for path, files in tqdm(targets, unit="image", disable=None):
        image = open_image(path).array
        prediction = predict(loaded, image, outputs=outputs, **options)
        arrays = _arrays(prediction)
        if args.instances:
            found = find_instances(
                prediction.labels,
                loaded.info.class_names,
                boundary_class=args.boundary_class,
                min_size=args.min_size,
            )
            arrays["instances"] = found.labels
            table = measure_instances(found, image, prediction.disagreement, channel_axis=args.channel_axis)
            write_measurements(files.pop("measurements"), table, args.overwrite)
        for kind, target in files.items():
            integer = kind in ("labels", "instances")
            array = arrays[kind] if integer else arrays[kind].astype(np.float32, copy=False)
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
    objects = parser.add_argument_group("objects")
    objects.add_argument(
        "--instances",
        action="store_true",
        help="also write <stem>_instances.tif (object labels 1..N, 0 = none) and <stem>_measurements.csv "
        "(one row per object: class, area, centroid, bounding box, intensities, branch disagreement)",
    )
    objects.add_argument(
        "--min-size", type=int, default=0, metavar="PIXELS", help="drop smaller objects (default: keep all)"
    )
    objects.add_argument(
        "--boundary-class",
        default=AUTO,
        type=_class_choice,
        metavar="NAME",
        help="the class between objects (name or index; objects are then split by a seeded watershed); "
        "default: a class named like boundary or membrane, if any; 'none': no boundary class",
    )
    add_model_options(parser)
    add_inference_options(parser)
    add_precision_option(parser)
    add_zarr_arguments(parser)
