"""``cellprep demo``: the model on the packaged sample tiles, one PNG panel per tile."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.devices import describe_device
from ..engine.images.io import read_image, sample_paths
from ..engine.prediction.inference import OUTPUTS, predict
from .common import CommandError, add_model_options, load_model_option, refuse_existing

HELP = "run the default model on the sample tiles and draw figure panels"
DESCRIPTION = (
    "Run a model on the packaged sample tiles and write one PNG panel per tile: input, "
    "filters, translated images, each branch's labels, the ensemble labels and the branch disagreement."
)


def run(args: argparse.Namespace) -> int:
    """Write ``<tile>_panel.png`` for every packaged sample tile."""
    from ..engine.export.panel import make_panel  # matplotlib is needed here only

    samples = sample_paths()
    if not samples:
        raise CommandError("no sample images are installed (napari_cellprep/samples/*.tif)")
    loaded = load_model_option(args.model, args.device)
    out = Path(args.out)
    targets = [out / f"{path.stem}_panel.png" for path in samples]
    refuse_existing(targets, args.overwrite)
    print(f"model {loaded.label} on {describe_device(loaded.device)}")
    for path, target in zip(samples, targets):
        image = read_image(path)
        make_panel(
            predict(loaded, image, outputs=OUTPUTS),
            image,
            target,
            class_colors=loaded.info.class_colors,
            title=f"{path.name}: model {loaded.label}",
            overwrite=args.overwrite,
        )
        print(f"wrote {target}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cellprep demo``."""
    parser.add_argument(
        "--out", default="cellprep-demo", metavar="DIR", help="folder for the panels (default: %(default)s)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing panels")
    add_model_options(parser)
