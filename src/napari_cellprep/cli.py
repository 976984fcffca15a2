"""The ``cellprep`` command: train, predict, evaluate and demo without napari.

Bad input ends with one line ``cellprep: error: ...`` and exit status 1 (2 for wrong usage);
Ctrl-C during training stops after the current step, keeps the best model and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__
from .engine.checkpoint import (
    SUFFIX,
    LoadedModel,
    ModelInfo,
    default_checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from .engine.data import labeled_items, split_validation
from .engine.devices import describe_device, resolve_device
from .engine.errors import CellprepError, SettingsError
from .engine.events import EpochEnd, StepEnd, drive
from .engine.inference import OUTPUTS, Prediction, predict
from .engine.labels import LabelKind, check_values, class_count
from .engine.layout import input_channels
from .engine.io import find_pairs, list_images, read_image, read_mask, sample_paths, write_image
from .engine.metrics import confusion_matrix, finite_or_none, scores
from .engine.normalize import Normalization
from .engine.training import LR_SCHEDULES, TrainConfig, TrainingResult, train_iter
from .model import ModelConfig
from .model.config import ARCHITECTURES, BACKBONES, ENSEMBLE_INITS, ENSEMBLES

INTERRUPTED = 130
DEFAULT_VAL_FRACTION = 0.2
ARCHITECTURE_OPTIONS = ("architecture", "backbone", "width", "depth", "penultimate", "ensemble", "ensemble_init")
INTERMEDIATES = ("filters", "translated", "probabilities", "branch_probabilities", "disagreement")

MASK_RULES = """\
Masks: one 2D integer image per image, same height and width, matched by file name without
extension; pixel value k = class k (0..C-1). A single mask may hold one class only (e.g. a tile
without cells), but across all training masks every class must occur. Binary 0/255 masks must
be saved as 0/1."""


class CommandError(CellprepError):
    """A problem with the command's input; printed as one line."""


# --- helpers shared by the subcommands --------------------------------------------------------


def _given(args: argparse.Namespace, names: dict[str, str]) -> dict:
    """Keyword arguments for the options the user gave (``None`` = keep the engine's default)."""
    return {key: getattr(args, name) for name, key in names.items() if getattr(args, name) is not None}


def _pairs(
    images: str | None, masks: str | None, pairs: list[list[str]] | None, what: str
) -> list[tuple[Path, Path]]:
    if (images is None) != (masks is None):
        raise CommandError(f"{what}: give both an image folder and a mask folder")
    found = find_pairs(images, masks) if images is not None else []
    found += [(Path(image), Path(mask)) for image, mask in pairs or []]
    if not found:
        raise CommandError(f"{what}: no images given (use --images DIR --masks DIR or --pair IMAGE MASK)")
    return found


def _load_model(path: str | None, device_name: str) -> LoadedModel:
    device = resolve_device(device_name)
    if path is None:
        path = default_checkpoint_path()
        if not path.is_file():
            raise CommandError(
                f"the bundled default model is not installed (expected at {path}); train one with "
                f"'cellprep train' and pass it with --model FILE{SUFFIX}"
            )
    return load_checkpoint(path, device)


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
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


@contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """While active, the first Ctrl-C sets ``stop``; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        tqdm.write(
            "cellprep: stopping after the current step and keeping the best model (Ctrl-C again to abort)",
            file=sys.stderr,
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


# --- train ------------------------------------------------------------------------------------


def _epoch_line(event: EpochEnd) -> str:
    line = f"epoch {event.epoch}/{event.epochs}  loss {event.train_loss:.4f}"
    if event.val_miou is not None:
        line += (
            f"  val mIoU {_fmt(event.val_miou)}  (best {_fmt(event.best_miou)} at epoch {event.best_epoch})"
        )
    return line + ("  *" if event.improved and event.val_miou is not None else "")


def _run_with_progress(events) -> TrainingResult:
    """Drive the training generator: a step bar on stderr, one line per epoch on stdout."""
    bar = None

    def show(event: StepEnd | EpochEnd) -> None:
        nonlocal bar
        if isinstance(event, EpochEnd):
            tqdm.write(_epoch_line(event))
            return
        if bar is None:
            bar = tqdm(total=event.epochs * event.steps_per_epoch, unit="step", disable=None, dynamic_ncols=True)
        bar.set_postfix_str(f"epoch {event.epoch}/{event.epochs} loss {event.loss:.4f}", refresh=False)
        bar.update()

    try:
        return drive(events, show)
    finally:
        if bar is not None:
            bar.close()


def _model_config(
    args: argparse.Namespace, init: LoadedModel | None, num_classes: int, in_channels: int
) -> ModelConfig:
    chosen = _given(args, {name: name for name in ARCHITECTURE_OPTIONS})
    if chosen.get("penultimate") == 0:
        chosen["penultimate"] = None  # the paper's width: the class count
    if init is None:
        try:
            return ModelConfig(num_classes=num_classes, in_channels=in_channels, **chosen)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
    if chosen:
        raise CommandError(
            f"--{next(iter(chosen))} cannot be combined with --init: fine-tuning keeps the "
            f"checkpoint's architecture"
        )
    base = init.info.config
    if in_channels != base.in_channels:
        raise CommandError(
            f"the images have {in_channels} channel(s) but the --init model takes {base.in_channels}"
        )
    penultimate = base.penultimate if base.penultimate is None or base.penultimate >= num_classes else None
    return ModelConfig(**{**base.to_dict(), "num_classes": num_classes, "penultimate": penultimate})


def _class_names(args: argparse.Namespace, init: LoadedModel | None, num_classes: int) -> list[str]:
    if args.class_names is not None:
        if len(args.class_names) != num_classes:
            raise CommandError(f"--class-names gives {len(args.class_names)} names for {num_classes} classes")
        return list(args.class_names)
    if init is not None and init.info.config.num_classes == num_classes:
        return list(init.info.class_names)
    return [f"class {k}" for k in range(num_classes)]


def _read_pairs(pairs: list[tuple[Path, Path]]) -> tuple[list[np.ndarray], list[tuple[Path, np.ndarray]]]:
    return [read_image(image) for image, _ in pairs], [(mask, read_mask(mask)) for _, mask in pairs]


def cmd_train(args: argparse.Namespace) -> int:
    """``cellprep train``: train (or fine-tune with ``--init``) and save the best model to ``--out``."""
    out = Path(args.out)
    if out.suffix != SUFFIX:
        raise CommandError(f"--out {out}: a checkpoint file name must end in {SUFFIX}")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out} already exists; use --overwrite to replace it, or choose another --out")
    if args.val_fraction is not None and (args.val_images or args.val_masks):
        raise CommandError("give either --val-fraction or --val-images/--val-masks, not both")
    device = resolve_device(args.device)
    init = load_checkpoint(args.init) if args.init else None
    pairs = _pairs(args.images, args.masks, args.pair, "training data")
    images, masks = _read_pairs(pairs)
    in_channels = input_channels(images[0].shape, channel_axis=args.channel_axis)
    normalization = (
        Normalization(args.normalization)
        if args.normalization
        else init.info.normalization
        if init
        else Normalization()
    )

    def to_items(images, masks, pairs):
        return [
            item
            for image, (_, mask), (image_path, _) in zip(images, masks, pairs)
            for item in labeled_items(
                image, mask, normalization, in_channels, channel_axis=args.channel_axis, name=str(image_path)
            )
        ]

    train_config = TrainConfig(
        device=str(device),
        **_given(
            args,
            {
                "epochs": "epochs",
                "batch_size": "batch_size",
                "lr": "learning_rate",
                "patch_size": "patch_size",
                "steps_per_epoch": "steps_per_epoch",
                "lr_schedule": "lr_schedule",
                "seed": "seed",
            },
        ),
    )
    train = to_items(images, masks, pairs)
    num_classes = class_count([item.labeled() for item in train], args.classes)
    if args.val_images is not None or args.val_masks is not None:
        val_pairs = _pairs(args.val_images, args.val_masks, None, "validation data")
        val_images, val_masks = _read_pairs(val_pairs)
        val = to_items(val_images, val_masks, val_pairs)
        check_values([item.labeled() for item in val], num_classes)
    else:
        fraction = DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction
        if not 0.0 <= fraction < 1.0:
            raise CommandError(f"--val-fraction must be in [0, 1), got {fraction}")
        train, val = split_validation(train, fraction, train_config.seed) if fraction > 0 else (train, None)

    config = _model_config(args, init, num_classes, in_channels)
    info = ModelInfo(config, _class_names(args, init, num_classes), normalization, name=args.name or "")
    # A new file is written by the engine at each improvement (survives a crash); an existing
    # one (--overwrite) is replaced only once training has ended.
    checkpoint_path = None if out.exists() else out
    print(
        f"training a {config.architecture} model ({config.backbone}, width {config.width}, "
        f"{num_classes} classes: "
        f"{', '.join(info.class_names)}) on {sum(item.labeled_pixels for item in train)} labeled pixels, "
        f"validating on {sum(item.labeled_pixels for item in val or [])}, on {describe_device(device)}"
    )
    stop = threading.Event()
    try:
        with _ctrl_c_sets(stop):
            events = train_iter(
                train, val, info, train_config, init=init, stop=stop, checkpoint_path=checkpoint_path
            )
            result = _run_with_progress(events)
    except KeyboardInterrupt:  # the second Ctrl-C
        if checkpoint_path is not None and out.exists():
            print(f"cellprep: aborted; {out} holds the best model so far", file=sys.stderr)
            return INTERRUPTED
        raise
    if checkpoint_path is None:
        save_checkpoint(out, result.model.model, result.model.info, overwrite=True)
    best = (
        f"best val mIoU {_fmt(result.best_miou)} at epoch {result.best_epoch}"
        if result.best_miou is not None
        else f"model of epoch {result.epochs_run}"
    )
    if result.stopped:
        print(f"stopped after {result.epochs_run} of {train_config.epochs} epoch(s); saved {out} ({best})")
        return INTERRUPTED
    print(f"saved {out} ({best})")
    return 0


# --- predict ----------------------------------------------------------------------------------


def _prediction_arrays(prediction: Prediction) -> dict[str, np.ndarray]:
    return {"labels": prediction.labels} | {
        name: getattr(prediction, name) for name in INTERMEDIATES if getattr(prediction, name) is not None
    }


def _expected_outputs(loaded: LoadedModel, intermediates: bool) -> tuple[str, ...]:
    if not intermediates:
        return ("labels",)
    if loaded.info.config.architecture != "cellprep":  # a plain U-Net: no filters, one branch
        return ("labels", "probabilities")
    return ("labels",) + INTERMEDIATES


def _inference_options(args: argparse.Namespace) -> dict:
    return {"channel_axis": args.channel_axis} | _given(
        args, {"tile": "tile", "overlap": "overlap", "batch_size": "batch_size"}
    )


def cmd_predict(args: argparse.Namespace) -> int:
    """``cellprep predict``: write ``<stem>_labels.tif`` (and intermediates if asked) per image."""
    paths = list_images(args.inputs)
    loaded = _load_model(args.model, args.device)
    out = Path(args.out)
    kinds = _expected_outputs(loaded, args.save_intermediates)
    targets = [(path, {kind: out / f"{path.stem}_{kind}.tif" for kind in kinds}) for path in paths]
    _refuse_existing([p for _, files in targets for p in files.values()], args.overwrite)
    print(f"model {loaded.label} on {describe_device(loaded.device)}")
    options = _inference_options(args)
    for path, files in tqdm(targets, unit="image", disable=None):
        prediction = predict(
            loaded, read_image(path), outputs=OUTPUTS if args.save_intermediates else (), **options
        )
        arrays = _prediction_arrays(prediction)
        for kind, target in files.items():
            array = arrays[kind] if kind == "labels" else arrays[kind].astype(np.float32, copy=False)
            write_image(target, array, args.overwrite)
        tqdm.write(f"{path} -> {files['labels']}")
    print(f"wrote {len(paths)} label image(s) to {out}")
    return 0


# --- evaluate ---------------------------------------------------------------------------------


def _evaluation_report(loaded: LoadedModel, pairs: list[tuple[Path, Path]], cm: np.ndarray) -> dict:
    result = scores(cm)
    return {
        "model": str(loaded.path) if loaded.path else loaded.label,
        "images": [str(image) for image, _ in pairs],
        "pixels": int(cm.sum()),
        "classes": [
            {
                "name": name,
                "iou": finite_or_none(result.iou[k]),
                "dice": finite_or_none(result.dice[k]),
                "true_pixels": int(cm[k].sum()),
                "predicted_pixels": int(cm[:, k].sum()),
            }
            for k, name in enumerate(loaded.info.class_names)
        ],
        "miou": finite_or_none(result.miou),
        "mdice": finite_or_none(result.mdice),
        "confusion_matrix": cm.tolist(),
    }


def _print_table(report: dict) -> None:
    width = max(12, *(len(c["name"]) for c in report["classes"]))
    print(f"{len(report['images'])} image(s), {report['pixels']} pixels, model {report['model']}")
    print(f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}  {'true px':>11}  {'predicted px':>12}")
    for c in report["classes"]:
        print(
            f"{c['name']:<{width}}  {_fmt(c['iou']):>7}  {_fmt(c['dice']):>7}  "
            f"{c['true_pixels']:>11}  {c['predicted_pixels']:>12}"
        )
    print(f"{'mean':<{width}}  {_fmt(report['miou']):>7}  {_fmt(report['mdice']):>7}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``cellprep evaluate``: per-class IoU/Dice from one confusion matrix over all pairs."""
    pairs = _pairs(args.images, args.masks, args.pair, "evaluation data")
    loaded = _load_model(args.model, args.device)
    num_classes = loaded.info.config.num_classes
    log = sys.stderr if args.json else sys.stdout
    print(f"model {loaded.label} on {describe_device(loaded.device)}", file=log)
    options = _inference_options(args)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for image_path, mask_path in tqdm(pairs, unit="image", disable=None):
        mask = read_mask(mask_path)
        check_values([(str(mask_path), mask, LabelKind.CLASS_INDEX)], num_classes)
        labels = predict(loaded, read_image(image_path), outputs=(), **options).labels
        if labels.shape != mask.shape:
            raise CommandError(
                f"{image_path} gives labels of shape {labels.shape} but its mask {mask_path} has "
                f"shape {mask.shape}"
            )
        cm += confusion_matrix(labels, mask, num_classes)
    report = _evaluation_report(loaded, pairs, cm)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


# --- demo -------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """``cellprep demo``: one PNG panel per packaged sample tile."""
    from . import demo  # matplotlib is needed here only

    samples = sample_paths()
    if not samples:
        raise CommandError("no sample images are installed (napari_cellprep/samples/*.tif)")
    loaded = _load_model(args.model, args.device)
    out = Path(args.out)
    targets = [out / f"{path.stem}_panel.png" for path in samples]
    _refuse_existing(targets, args.overwrite)
    print(f"model {loaded.label} on {describe_device(loaded.device)}")
    for path, target in zip(samples, targets):
        image = read_image(path)
        prediction = predict(loaded, image, outputs=OUTPUTS)
        demo.make_panel(
            prediction,
            image,
            target,
            class_colors=loaded.info.class_colors,
            title=f"{path.name}: model {loaded.label}",
            overwrite=args.overwrite,
        )
        print(f"wrote {target}")
    return 0


# --- argument parsing -------------------------------------------------------------------------


def _add_model_options(parser: argparse.ArgumentParser, *, model_help: str | None = None) -> None:
    parser.add_argument(
        "--model",
        metavar=f"FILE{SUFFIX}",
        help=model_help or "the model checkpoint (default: the bundled default model)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps"
    )


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile", type=int, help="tile size in pixels for large images (default: 256)")
    parser.add_argument("--overlap", type=int, help="overlap between tiles in pixels (default: 64)")
    parser.add_argument("--batch-size", type=int, help="tiles per forward pass (default: 4)")
    parser.add_argument(
        "--channel-axis", type=int, help="axis of the colour channels, for multi-channel models"
    )


def _add_pair_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", metavar="DIR", help="folder of images")
    parser.add_argument("--masks", metavar="DIR", help="folder of masks, matched to images by file name stem")
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("IMAGE", "MASK"),
        help="one image and its mask (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``cellprep`` argument parser; each subcommand sets ``run`` to its ``cmd_*`` function."""
    parser = argparse.ArgumentParser(
        prog="cellprep",
        description="Learned preprocessing and ensemble segmentation of low-quality cell images "
        "(Kato & Hotta).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a model from images and masks",
        epilog=MASK_RULES,
        description="Train a model from images and class-index masks and save it as a checkpoint. "
        "Ctrl-C stops after the current step and keeps the best model so far.",
    )
    _add_pair_options(train)
    train.add_argument("--out", required=True, metavar=f"FILE{SUFFIX}", help="checkpoint to write")
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    train.add_argument("--name", help="model name shown in menus (default: the file name)")
    train.add_argument(
        "--classes", type=int, metavar="N", help="number of classes (default: largest mask value + 1)"
    )
    train.add_argument("--class-names", nargs="+", metavar="NAME", help="one name per class, in index order")
    model = train.add_argument_group("model (taken from the checkpoint with --init)")
    model.add_argument("--architecture", choices=ARCHITECTURES, help=f"default: {ModelConfig.architecture}")
    model.add_argument("--backbone", choices=BACKBONES, help=f"default: {ModelConfig.backbone}")
    model.add_argument(
        "--width", type=int, help=f"channels of the first U-Net level (default: {ModelConfig.width})"
    )
    model.add_argument("--depth", type=int, help=f"pooling steps of the U-Net (default: {ModelConfig.depth})")
    model.add_argument(
        "--penultimate", type=int, help="width of network 1's penultimate maps, at least the class count "
        f"(default: {ModelConfig.penultimate}; 0 = the class count, as in the paper)"
    )
    model.add_argument("--ensemble", choices=ENSEMBLES, help=f"default: {ModelConfig.ensemble}")
    model.add_argument(
        "--ensemble-init",
        choices=ENSEMBLE_INITS,
        help=f"start of the learned ensemble weights: PyTorch's random init or 1/S each "
        f"(default: {ModelConfig.ensemble_init})",
    )
    model.add_argument(
        "--init", metavar=f"FILE{SUFFIX}", help="fine-tune this checkpoint instead of starting afresh"
    )
    opt = train.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, help=f"default: {TrainConfig.epochs}")
    opt.add_argument("--batch-size", type=int, help=f"default: {TrainConfig.batch_size}")
    opt.add_argument("--lr", type=float, help=f"Adam learning rate (default: {TrainConfig.learning_rate})")
    opt.add_argument("--lr-schedule", choices=LR_SCHEDULES, help=f"default: {TrainConfig.lr_schedule}")
    opt.add_argument(
        "--patch-size", type=int, help=f"square training patch (default: {TrainConfig.patch_size})"
    )
    opt.add_argument("--steps-per-epoch", type=int, help="default: about one pass over the labeled area")
    opt.add_argument("--seed", type=int, help=f"default: {TrainConfig.seed}")
    opt.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps"
    )
    data = train.add_argument_group("data")
    data.add_argument(
        "--normalization", choices=("minmax", "percentile"), help="intensity scaling (default: minmax)"
    )
    data.add_argument("--channel-axis", type=int, help="axis of the colour channels of multi-channel images")
    data.add_argument(
        "--val-fraction",
        type=float,
        help="share of labeled pixels held out for validation, "
        f"in blocks (default: {DEFAULT_VAL_FRACTION}; 0 = no validation, the last epoch is kept)",
    )
    data.add_argument(
        "--val-images", metavar="DIR", help="validation image folder (instead of --val-fraction)"
    )
    data.add_argument("--val-masks", metavar="DIR", help="validation mask folder")
    train.set_defaults(run=cmd_train)

    pred = commands.add_parser(
        "predict",
        help="segment images into label TIFFs",
        description="Segment images (files or folders) and write <stem>_labels.tif class-index images "
        "to --out.",
    )
    pred.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    pred.add_argument("--out", required=True, metavar="DIR", help="folder for the outputs")
    pred.add_argument("--overwrite", action="store_true", help="replace existing output files")
    pred.add_argument(
        "--save-intermediates",
        action="store_true",
        help="also write float32 TIFFs <stem>_<output>.tif of " + ", ".join(INTERMEDIATES),
    )
    _add_model_options(pred)
    _add_inference_options(pred)
    pred.set_defaults(run=cmd_predict)

    ev = commands.add_parser(
        "evaluate",
        help="score a model against masks",
        epilog=MASK_RULES,
        description="Per-class IoU and Dice, their means and pixel counts, from one confusion matrix "
        "over all pixels.",
    )
    _add_pair_options(ev)
    ev.add_argument("--json", action="store_true", help="print machine-readable JSON to stdout")
    _add_model_options(ev)
    _add_inference_options(ev)
    ev.set_defaults(run=cmd_evaluate)

    dm = commands.add_parser(
        "demo",
        help="run the default model on the sample tiles and draw figure panels",
        description="Run a model on the packaged sample tiles and write one PNG panel per tile: input, "
        "filters, "
        "translated images, each branch's labels, the ensemble labels and the branch disagreement.",
    )
    dm.add_argument(
        "--out", default="cellprep-demo", metavar="DIR", help="folder for the panels (default: %(default)s)"
    )
    dm.add_argument("--overwrite", action="store_true", help="replace existing panels")
    _add_model_options(dm)
    dm.set_defaults(run=cmd_demo)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run ``cellprep`` with ``argv`` (default: the command line); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        print("cellprep: interrupted", file=sys.stderr)
        return INTERRUPTED
    except CellprepError as exc:  # the user can fix it; anything else is a bug: its traceback shows
        print(f"cellprep: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
