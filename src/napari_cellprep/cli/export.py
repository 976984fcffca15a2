"""``cellprep export``: a model as a bioimage.io model package, validated by bioimageio.core."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.checkpoint import DEFAULT_MODEL, SUFFIX, load_model
from ..engine.images.io import check_writable, keep_apart, read_image
from .common import CommandError, refuse_existing

HELP = "export a model as a bioimage.io model package"
DESCRIPTION = (
    "Write a model as a bioimage.io model package (format 0.5: PyTorch state dict with its architecture "
    "source, TorchScript, test tensors from a sample tile, cover, citation, class names, preprocessing), "
    "then validate and test-run it with bioimageio.core. Needs the bioimageio extra."
)


def run(args: argparse.Namespace) -> int:
    """Export, then test the package; exit 1 if bioimageio.core does not pass it."""
    from ..engine.export.bioimageio import export_bioimageio, network_alone, test_package

    out = Path(args.bioimageio)
    refuse_existing([out], args.overwrite)
    loaded = load_model(args.model)
    keep_apart([out], [loaded.path, args.sample])
    check_writable(out)
    sample = read_image(args.sample) if args.sample else None
    export_bioimageio(loaded, out, sample=sample, overwrite=args.overwrite)
    print(f"wrote {out} ({loaded.label})")
    if network_alone(loaded):
        print(f"note: {network_alone(loaded)}")
    if args.no_test:
        return 0
    passed, summary = test_package(out)
    print(summary if args.verbose else summary.split("\n\n")[0])
    if not passed:
        raise CommandError(f"bioimageio.core did not pass {out}; see the summary above")
    print(f"bioimageio.core: {out} passed validation and its test run")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cellprep export``."""
    parser.add_argument(
        "model",
        metavar=f"MODEL{SUFFIX}",
        help=f"the checkpoint to export ('{DEFAULT_MODEL}': the bundled model)",
    )
    parser.add_argument("--bioimageio", required=True, metavar="OUT.zip", help="the package to write")
    parser.add_argument(
        "--sample", metavar="IMAGE", help="image for the test tensors and cover (default: a NIST tile)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT.zip if it exists")
    parser.add_argument(
        "--no-test", action="store_true", help="skip bioimageio.core's validation and test run"
    )
    parser.add_argument("--verbose", action="store_true", help="print bioimageio.core's whole summary")
