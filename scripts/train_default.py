"""Train the bundled default model on NIST phase-contrast tiles and report its held-out mIoU,
network 1's own mIoU and how much of a grid its filters show (engine.periodicity); record the
limits of engine.familiarity calibrated on the held-out tiles (``--calibrate-only``: just that,
for an existing model).

Split (fixed): the sorted tile list, every fifth tile held out for testing (20 tiles, the shipped
samples among them); of the other 80, every tenth for validation (best epoch), 72 for training.
``--inverted`` adds each training tile with inverted intensities (bright objects on a dark
background, as in fluorescence), so that the starting point for fine-tuning knows both polarities.
``--low-light-copies K`` adds K copies of each training tile (and of its inverted copy) as acquired
in low light (``engine.degrade.LowLight``: Poisson shot noise at a mean photon count drawn
log-uniformly from 2 to 200 per pixel, Gaussian read noise of 0 to 3 photo-electrons; fixed seeds),
so that the starting point has seen the low-quality images the product is for.
``--synthetic N`` adds N drawn tiles of generic structures (``synthetic_tiles``: cell tessellations
with thin boundaries, blobs; class 1 the structure), so that the starting point has features for
more than colonies.

    python -m scripts.train_default --out src/napari_cellprep/models/default.cellprep --inverted
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness.degrade import LowLight
from benchmarks.harness.periodicity import lattice_ratio
from napari_cellprep.engine.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
from napari_cellprep.engine.events import EpochEnd, drive
from napari_cellprep.engine.images.io import find_pairs, read_image, read_mask
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.engine.prediction.evaluation import PairScored, evaluate_iter
from napari_cellprep.engine.prediction.familiarity import calibrate_model
from napari_cellprep.engine.training.data import LabeledImage, from_mask
from napari_cellprep.engine.training.loop import TrainConfig, train
from napari_cellprep.model import NAMED_CONFIGS, named_config
from napari_cellprep.model.config import NORMS
from scripts.synthetic_tiles import synthetic_tile

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CELLPREP_DATA", REPO.parent / "shared" / "data")) / "nist-phase"


def low_light_copies(pairs, normalization: Normalization, copies: int, seed: int) -> list[LabeledImage]:
    """``copies`` low-light acquisitions of each (image, mask) pair, each at its own light level."""
    rng = np.random.default_rng([seed, 20261203])
    items = []
    for image_path, mask_path in pairs:
        image, mask = read_image(image_path), read_mask(mask_path)
        for copy in range(copies):
            level = LowLight(photons=float(np.exp(rng.uniform(np.log(2.0), np.log(200.0)))),
                             read_noise=float(rng.uniform(0.0, 3.0)))
            noisy = level.apply(image, seed=int(rng.integers(2**31)))
            items.append(from_mask(noisy, mask, normalization, name=f"{image_path.stem} low light {copy}"))
    return items


def synthetic_items(count: int, seed: int) -> list[LabeledImage]:
    """``count`` synthetic tiles as training items (already in 0..1, as min-max normalised tiles are)."""
    rng = np.random.default_rng([seed, 256])
    items = []
    for index in range(count):
        image, mask = synthetic_tile(rng)
        items.append(LabeledImage(image[None], mask.astype(np.int64), f"synthetic {index}"))
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", choices=sorted(NAMED_CONFIGS), default="default")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--norm", choices=NORMS, help="normalisation layers (default: the configuration's)")
    parser.add_argument("--inverted", action="store_true", help="also train on inverted copies of the tiles")
    parser.add_argument(
        "--low-light-copies", type=int, default=0, metavar="K",
        help="also train on K low-light copies of each training tile (and inverted copy)",
    )
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="also train on N synthetic tiles (scripts/synthetic_tiles.py)")
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--calibrate-only", action="store_true",
        help="do not train: record the familiarity limits of the --out model (weights unchanged)",
    )
    args = parser.parse_args(argv)

    pairs = find_pairs(DATA / "images", DATA / "masks")
    test = pairs[::5]
    if args.calibrate_only:
        loaded = load_checkpoint(args.out)
        loaded.info.training["familiarity_limits"] = calibrate_model(loaded, (read_image(i) for i, _ in test))
        save_checkpoint(args.out, loaded.model, loaded.info, overwrite=True)
        print(json.dumps({"familiarity_limits": loaded.info.training["familiarity_limits"]}))
        return 0
    rest = [p for i, p in enumerate(pairs) if i % 5]
    val, training = rest[::10], [p for i, p in enumerate(rest) if i % 10]
    normalization = Normalization("minmax")
    config = named_config(args.config, num_classes=2, width=args.width, **({"norm": args.norm} if args.norm else {}))
    info = ModelInfo(
        config, ["background", "colony"], normalization, class_colors=["#000000", "#ffd700"],
        name="NIST phase-contrast colonies (default)",
    )

    def load(ps):
        return [from_mask(read_image(i), read_mask(m), normalization, name=i.stem) for i, m in ps]

    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patch_size=args.patch_size, seed=args.seed,
                     steps_per_epoch=args.steps_per_epoch)
    training_items = load(training)
    training_items += low_light_copies(training, normalization, args.low_light_copies, args.seed)
    if args.inverted:
        training_items += [LabeledImage(1.0 - t.image, t.target, t.name + " inverted") for t in training_items]
    training_items += synthetic_items(args.synthetic, args.seed)
    start = time.perf_counter()
    def report(event) -> None:
        if isinstance(event, EpochEnd):
            print(f"epoch {event.epoch}: loss {event.train_loss:.4f}, val mIoU {event.val_miou:.4f}", flush=True)

    result = train(training_items, load(val), info, tc, callback=report)
    test_images = {image_path.stem: read_image(image_path) for image_path, _ in test}
    grid: dict[str, list[float]] = {}

    def lattice(event: PairScored) -> None:
        image = test_images[event.message].astype(np.float64)
        grid[event.message] = [lattice_ratio(f, image) for f in event.prediction.filters]

    pairs = ((test_images[image_path.stem], read_mask(mask_path)) for image_path, mask_path in test)
    scoring = evaluate_iter(result.model, pairs, names=list(test_images), outputs=("branches", "filters"))
    evaluation = drive(scoring, lattice)
    test_scores, network1_miou = evaluation.scores, evaluation.branch_scores[0].miou
    loaded = result.model
    loaded.info.training.update(
        data="NIST phase-contrast tiles (usnistgov/semantic-segmentation-unet), 72 train / 8 val / 20 test"
        + (", with inverted copies of the training tiles" if args.inverted else "")
        + (f", {args.low_light_copies} low-light copies of each" if args.low_light_copies else "")
        + (f", and {args.synthetic} synthetic tiles (scripts/synthetic_tiles.py)" if args.synthetic else ""),
        test_tiles=[p[0].name for p in test],
        test_miou=test_scores.miou,
        test_iou=test_scores.iou,
        test_dice=test_scores.dice,
        test_network1_miou=network1_miou,
        filter_lattice_ratio={name: grid[name] for name in sorted(grid)},
        filter_lattice_ratio_max=max(max(v) for v in grid.values()),
        inverted_copies=args.inverted,
        low_light_copies=args.low_light_copies,
        synthetic_tiles=args.synthetic,
        familiarity_limits=calibrate_model(loaded, test_images.values()),
        command="python -m scripts.train_default " + " ".join(sys.argv[1:] if argv is None else argv),
        wall_seconds=time.perf_counter() - start,
    )
    save_checkpoint(args.out, loaded.model, loaded.info, overwrite=args.overwrite)
    print(json.dumps({"test": test_scores.to_dict(), "network1_miou": network1_miou,
                      "filter_lattice_ratio_max": max(max(v) for v in grid.values()),
                      "best_epoch": result.best_epoch, "best_val_miou": result.best_miou}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
