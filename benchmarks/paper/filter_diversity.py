"""Does a CellPrep model translate an image into different images? The pairwise Pearson
correlation of its C translation filters and of its C translated images, on each image given,
and their means.

    python -m benchmarks.paper.filter_diversity runs/models/vnc-em_clean_fold0_seed0_cellprep-product.cellprep \\
        --images ../shared/data/vnc-em/images/00.tif --crop 256

A correlation near 1 for every pair means network 2 sees one image C times, so its C branches
cannot disagree and the ensemble cannot gain from them. One torch thread, CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from napari_cellprep.engine.checkpoint import load_checkpoint
from napari_cellprep.engine.images.io import read_image
from napari_cellprep.engine.prediction.inference import predict
from napari_cellprep.model.loss import pairwise_correlations


def _correlations(stack: np.ndarray) -> list[float]:
    """``pairwise_correlations`` of the K maps along ``stack``'s first axis, in float64."""
    return pairwise_correlations(torch.from_numpy(np.asarray(stack, dtype=np.float64))[None])[0].tolist()


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:+.3f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", type=Path, help=".cellprep checkpoints of CellPrep models")
    parser.add_argument("--images", nargs="+", type=Path, required=True, help="2D images to translate")
    parser.add_argument("--crop", type=int, default=0, help="score the top-left crop² of each image (0: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images = [read_image(p) for p in args.images]
    if args.crop:
        images = [im[: args.crop, : args.crop] for im in images]
    for path in args.models:
        loaded = load_checkpoint(path)
        if loaded.info.config.architecture != "cellprep":
            parser.error(f"{path} is a plain {loaded.info.config.backbone}: it has no translation filters")
        filters, translated = [], []
        for path_image, image in zip(args.images, images):
            p = predict(loaded, image, outputs=("filters", "translated"))
            filters.append(_correlations(p.filters))
            translated.append(_correlations(p.translated))
            print(
                f"{path.name} {path_image.name}: filters r = {_fmt(filters[-1])}; translated r = {_fmt(translated[-1])}"
            )
        print(
            f"{path.name} mean over {len(images)} image(s): filters r = {_fmt(np.mean(filters, 0).tolist())}; "
            f"translated r = {_fmt(np.mean(translated, 0).tolist())}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
