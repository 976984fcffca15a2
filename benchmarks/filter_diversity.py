"""Does a CellPrep model translate an image into different images? The pairwise Pearson
correlation of its C translation filters and of its C translated images, on each image given,
and their means.

    python benchmarks/filter_diversity.py runs/models/vnc-em_clean_fold0_seed0_cellprep-product.cellprep \\
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
from napari_cellprep.engine.inference import predict
from napari_cellprep.engine.io import read_image


def pairwise_correlations(stack: np.ndarray) -> list[float]:
    """Pearson correlation of each pair (i < j) of the K arrays along ``stack``'s first axis;
    a constant array correlates 0 with anything."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(stack.reshape(len(stack), -1).astype(np.float64))
    return np.nan_to_num(r[np.triu_indices(len(stack), 1)]).tolist()


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
            filters.append(pairwise_correlations(p.filters))
            translated.append(pairwise_correlations(p.translated))
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
