"""``cellprep train``: train (or fine-tune with ``--init``) and save the best model."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from ..engine.checkpoint import DEFAULT_MODEL, SUFFIX, load_model, save_checkpoint
from ..engine.devices import describe_device, resolve_device
from ..engine.events import EpochEnd, NormAdapted, StepEnd, drive
from ..engine.images.io import check_writable, keep_apart, read_image, read_mask
from ..engine.training.loop import TrainingResult
from ..engine.training.plan import (
    CONTINUE_DEFAULTS,
    DEFAULT_VAL_FRACTION,
    FINE_TUNE_DEFAULTS,
    LR_SCHEDULES,
    TrainConfig,
)
from ..engine.training.recipe import LabeledInput, prepare_run
from ..engine.training.two_speed import ClassifierFitted, EnsembleChosen, two_speed_job
from ..model import NAMED_CONFIGS, ModelConfig
from ..model.config import (
    ARCHITECTURES,
    BACKBONES,
    DOWNSAMPLES,
    ENSEMBLE_INITS,
    ENSEMBLES,
    FILTER_ACTIVATIONS,
    NORMS,
    UPSAMPLES,
)
from .common import (
    INTERRUPTED,
    CommandError,
    add_channel_axis_option,
    add_device_option,
    add_pair_options,
    label_kind,
    options_given,
    pair_paths,
    score,
)

ARCHITECTURE_OPTIONS = (
    "architecture",
    "backbone",
    "width",
    "depth",
    "penultimate",
    "ensemble",
    "ensemble_init",
    "upsample",
    "downsample",
    "filter_activation",
    "norm",
)
SETTINGS_OPTIONS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "patch_size": "patch_size",
    "steps_per_epoch": "steps_per_epoch",
    "lr_schedule": "lr_schedule",
    "seed": "seed",
    "seconds": "seconds",
    "freeze_norm": "freeze_norm",
    "adapt_norm": "adapt_norm",
    "refresh_norm": "refresh_norm",
    "fit_heads": "fit_heads",
    "cpu_bfloat16": "cpu_bfloat16",
    "average_weights": "average_weights",
    "select_on_strokes": "select_on_strokes",
    "filter_decorrelation": "filter_decorrelation",
}
"""``{option dest: TrainConfig field}``."""

MASK_RULES = """\
Masks: one 2D integer image per image, same height and width, matched by file name without
extension; pixel value k = class k (0..C-1), -1 = unlabelled (not trained on, e.g. in a signed
int16 mask). A single mask may hold one class only (e.g. a tile
without cells), but across all training masks every class must occur. Binary 0/255 masks must
be saved as 0/1. With --painted every label file holds painted values instead, as a napari
Labels layer: 0 = not annotated, v = class v-1."""

HELP = "train a model from images and masks"
DESCRIPTION = (
    "Train a model from images and class-index masks and save it as a checkpoint. "
    "Ctrl-C stops after the current step and keeps the best model so far."
)
EPILOG = MASK_RULES


@contextmanager
def stop_on_ctrl_c(stop: threading.Event) -> Iterator[None]:
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


def _epoch_line(event: EpochEnd) -> str:
    line = f"epoch {event.epoch}/{event.epochs}  loss {event.train_loss:.4f}"
    if event.val_miou is not None:
        line += (
            f"  {'val' if event.scored_on == 'validation' else 'painted'} mIoU {score(event.val_miou)}  "
            f"(best {score(event.best_miou)} at epoch {event.best_epoch})"
        )
    return line + ("  *" if event.improved and event.val_miou is not None else "")


def _run_with_progress(events) -> TrainingResult:
    """Drive the training generator: a step bar on stderr, one line per epoch on stdout."""
    bar = None

    def show(event: NormAdapted | StepEnd | EpochEnd | ClassifierFitted | EnsembleChosen) -> None:
        nonlocal bar
        if isinstance(event, NormAdapted):
            tqdm.write("normalisation statistics re-estimated on the training images (AdaBN)")
            return
        if isinstance(event, ClassifierFitted):
            held = "" if event.held_out is None else f", held-out mIoU {score(event.held_out)}"
            tqdm.write(f"pixel classifier fitted in {event.seconds:.1f} s{held}; training the network past it")
            return
        if isinstance(event, EnsembleChosen):
            tqdm.write(f"  keeps the {event.which} (classifier weight {event.weight:g}, "
                       f"held-out mIoU {score(event.held_out[event.weight])})")
            return
        if isinstance(event, EpochEnd):
            tqdm.write(_epoch_line(event))
            return
        if bar is None:
            bar = tqdm(
                total=event.epochs * event.steps_per_epoch, unit="step", disable=None, dynamic_ncols=True
            )
        bar.set_postfix_str(f"epoch {event.epoch}/{event.epochs} loss {event.loss:.4f}", refresh=False)
        bar.update()

    try:
        return drive(events, show)
    finally:
        if bar is not None:
            bar.close()


def _inputs(pairs: list[tuple[Path, Path]]) -> Iterator[LabeledInput]:
    """The labeled input of each (image, labels) file pair, read as the run plan takes it."""
    for image_path, labels_path in pairs:
        yield LabeledInput(read_image(image_path), read_mask(labels_path), str(image_path))


def _architecture(args: argparse.Namespace, fine_tune: bool) -> dict:
    """The ``ModelConfig`` fields of ``--config`` and the architecture options given."""
    architecture = options_given(args, {name: name for name in ARCHITECTURE_OPTIONS})
    if args.config is not None:
        if fine_tune:
            raise CommandError("--config cannot be set when fine-tuning: the model keeps the architecture of --init")
        architecture = {**NAMED_CONFIGS[args.config], **architecture}
    if architecture.get("penultimate") == 0:
        architecture["penultimate"] = None  # the paper's width: the class count
    return architecture


def run(args: argparse.Namespace) -> int:
    """Train (or fine-tune with ``--init``) and save the best model to ``--out``."""
    out = Path(args.out)
    if out.suffix != SUFFIX:
        raise CommandError(f"--out {out}: a checkpoint file name must end in {SUFFIX}")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out} already exists; use --overwrite to replace it, or choose another --out")
    validation = args.val_fraction
    if validation is not None and (args.val_images or args.val_masks):
        raise CommandError("give either --val-fraction or --val-images/--val-masks, not both")
    if validation is not None and not 0.0 <= validation < 1.0:
        raise CommandError(f"--val-fraction must be in [0, 1), got {validation}")
    device = resolve_device(args.device)
    pairs = pair_paths(args.images, args.masks, args.pair, "training data")
    val_pairs = (
        pair_paths(args.val_images, args.val_masks, None, "validation data")
        if args.val_images is not None or args.val_masks is not None
        else None
    )
    two_speed = args.painted and not args.no_classifier
    init = load_model(args.init) if args.init else None
    keep_apart([out], [path for pair in pairs + (val_pairs or []) for path in pair] + [init and init.path])
    check_writable(out)
    architecture = _architecture(args, init is not None)
    if val_pairs is not None:
        validation = _inputs(val_pairs)
    elif validation is None and two_speed:  # the two speeds choose the classifier's weight on held-out strokes
        validation = DEFAULT_VAL_FRACTION
    plan = prepare_run(
        _inputs(pairs),
        kind=label_kind(args),
        init=init,
        channel_axis=args.channel_axis,
        num_classes=args.classes,
        class_names=args.class_names,
        architecture=architecture,
        normalization=args.normalization,
        settings={**options_given(args, SETTINGS_OPTIONS), "device": str(device)},
        validation=validation,
        name=args.name or "",
    )
    for message in plan.warnings:
        print(f"cellprep: warning: {message}", file=sys.stderr)

    # A new file is written by the engine at each improvement (survives a crash); an existing
    # one (--overwrite) is replaced only once training has ended.
    checkpoint_path = None if out.exists() else out
    info, settings = plan.info, plan.config
    config = info.config
    pixels, val_pixels = plan.labeled_pixels
    print(
        f"training a {config.architecture} model ({config.backbone}, width {config.width}, "
        f"{config.num_classes} classes: {', '.join(info.class_names)}) on "
        f"{pixels} labeled pixels, validating on {val_pixels}, on {describe_device(device)}"
    )
    stop = threading.Event()
    try:
        with stop_on_ctrl_c(stop):
            if two_speed:  # the checkpoint is written at the end, with its classifier
                checkpoint_path = None
                events = two_speed_job(plan, stop=stop)
            else:
                events = plan.train_iter(stop=stop, checkpoint_path=checkpoint_path)
            result = _run_with_progress(events)
    except KeyboardInterrupt:  # the second Ctrl-C
        if checkpoint_path is not None and out.exists():
            print(f"cellprep: aborted; {out} holds the best model so far", file=sys.stderr)
            return INTERRUPTED
        raise
    if checkpoint_path is None:
        save_checkpoint(out, result.model.model, result.model.info, overwrite=True, classifier=result.model.classifier)
    best = (
        f"best val mIoU {score(result.best_miou)} at epoch {result.best_epoch}"
        if result.best_miou is not None
        else f"model of epoch {result.epochs_run}"
    )
    if result.model.classifier is not None:
        best += f"; pixel classifier weight {result.model.classifier.weight:g}"
    if result.stopped:
        print(f"stopped after {result.epochs_run} of {settings.epochs} epoch(s); saved {out} ({best})")
        return INTERRUPTED
    if result.out_of_time:
        print(
            f"time budget of {settings.seconds:g} s spent after {result.epochs_run} epoch(s); saved {out} ({best})"
        )
        return 0
    print(f"saved {out} ({best})")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cellprep train``."""
    add_pair_options(parser)
    parser.add_argument("--out", required=True, metavar=f"FILE{SUFFIX}", help="checkpoint to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--name", help="model name shown in menus (default: the file name)")
    parser.add_argument(
        "--classes",
        type=int,
        metavar="N",
        help="number of classes (default: the largest class in the labels + 1)",
    )
    parser.add_argument(
        "--class-names",
        nargs="+",
        metavar="NAME",
        help="one name per class, in index order (default: the --init model's when the count is the same)",
    )
    model = parser.add_argument_group("model (taken from the checkpoint with --init)")
    model.add_argument(
        "--config",
        choices=sorted(NAMED_CONFIGS),
        help="named architecture: 'default' (the product's, chosen on evidence; used when not given) or "
        "'paper' (Kato & Hotta's method exactly); the options below change it",
    )
    model.add_argument("--architecture", choices=ARCHITECTURES, help=f"default: {ModelConfig.architecture}")
    model.add_argument("--backbone", choices=BACKBONES, help=f"default: {ModelConfig.backbone}")
    model.add_argument(
        "--width", type=int, help=f"channels of the first U-Net level (default: {ModelConfig.width})"
    )
    model.add_argument("--depth", type=int, help=f"pooling steps of the U-Net (default: {ModelConfig.depth})")
    model.add_argument(
        "--penultimate",
        type=int,
        help="width of network 1's penultimate maps, at least the class count "
        f"(default: {ModelConfig.penultimate}; 0 = the class count, as in the paper)",
    )
    model.add_argument("--ensemble", choices=ENSEMBLES, help=f"default: {ModelConfig.ensemble}")
    model.add_argument(
        "--ensemble-init",
        choices=ENSEMBLE_INITS,
        help=f"start of the learned ensemble weights: PyTorch's random init or 1/S each "
        f"(default: {ModelConfig.ensemble_init})",
    )
    model.add_argument("--upsample", choices=UPSAMPLES, help=f"U-Net upsampling (default: {ModelConfig.upsample})")
    model.add_argument(
        "--downsample",
        choices=DOWNSAMPLES,
        help=f"U-Net pooling: max, or max then a blur before subsampling (default: {ModelConfig.downsample})",
    )
    model.add_argument(
        "--filter-activation",
        choices=FILTER_ACTIVATIONS,
        help=f"keeps the translation filters non-negative (default: {ModelConfig.filter_activation})",
    )
    model.add_argument("--norm", choices=NORMS, help=f"normalisation layers (default: {ModelConfig.norm})")
    model.add_argument(
        "--init",
        metavar=f"FILE{SUFFIX}",
        help=f"fine-tune this checkpoint ('{DEFAULT_MODEL}': the bundled model) instead of starting afresh "
        "(the class count may change: the heads then start afresh)",
    )
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, help=f"default: {TrainConfig.epochs}")
    opt.add_argument(
        "--batch-size",
        type=int,
        help=f"default: {TrainConfig.batch_size} ({FINE_TUNE_DEFAULTS['batch_size']} with --init)",
    )
    opt.add_argument(
        "--lr",
        type=float,
        help=f"Adam learning rate (default: {TrainConfig.learning_rate}; "
        f"{FINE_TUNE_DEFAULTS['learning_rate']} with --init)",
    )
    opt.add_argument("--lr-schedule", choices=LR_SCHEDULES, help=f"default: {TrainConfig.lr_schedule}")
    opt.add_argument(
        "--patch-size",
        type=int,
        help=f"square training patch (default: {TrainConfig.patch_size}; "
        f"{FINE_TUNE_DEFAULTS['patch_size']} with --init)",
    )
    opt.add_argument(
        "--steps-per-epoch",
        type=int,
        help=f"default: about one pass over the labeled area ({FINE_TUNE_DEFAULTS['steps_per_epoch']} with --init)",
    )
    opt.add_argument("--seed", type=int, help=f"default: {TrainConfig.seed}")
    opt.add_argument(
        "--adapt-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="re-estimate the BatchNorm statistics on the training patches before the first step (AdaBN; "
        f"default: {'on' if FINE_TUNE_DEFAULTS.get('adapt_norm') else 'off'} with --init, off otherwise)",
    )
    opt.add_argument(
        "--refresh-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="re-estimate the BatchNorm statistics on training patches at the end of every epoch, before it "
        f"is scored and kept (default: {'on' if FINE_TUNE_DEFAULTS.get('refresh_norm') else 'off'} with --init, "
        "off otherwise)",
    )
    opt.add_argument(
        "--fit-heads",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --init into another class count: fit the new heads to the labels, the rest of the model "
        "fixed, before the first step (linear probing; default: "
        f"{'on' if FINE_TUNE_DEFAULTS.get('fit_heads') else 'off'} with --init)",
    )
    opt.add_argument(
        "--cpu-bfloat16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="on a CPU with bfloat16 in hardware (AMX, AVX512-BF16), run the training steps under bfloat16 "
        "autocast, weights kept float32; nothing elsewhere (default: "
        f"{'on' if FINE_TUNE_DEFAULTS.get('cpu_bfloat16') else 'off'} with --init, off otherwise)",
    )
    opt.add_argument(
        "--average-weights",
        type=float,
        metavar="DECAY",
        help="keep a moving average of the weights (average <- DECAY*average + (1-DECAY)*weights after "
        "every step) as each epoch's model; 0: the last weights (default: "
        f"{CONTINUE_DEFAULTS.get('average_weights', 0)} when --init was itself fine-tuned on these images, 0 "
        "otherwise)",
    )
    opt.add_argument(
        "--select-on-strokes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="without validation data, keep an epoch only when it fits the training labels at least as well "
        "as the starting model and the epochs before (default: "
        f"{'on' if FINE_TUNE_DEFAULTS.get('select_on_strokes') else 'off'} with --init, off otherwise)",
    )
    opt.add_argument(
        "--freeze-norm",
        action="store_true",
        default=None,
        help="re-estimate the BatchNorm statistics on the training patches, then keep them fixed (for "
        "fine-tuning on a few strokes)",
    )
    opt.add_argument(
        "--seconds",
        type=float,
        metavar="N",
        help="end training after N seconds from its first step (loading not included), or at --epochs, "
        "whichever comes first; a normal end (exit 0) keeping the best model",
    )
    opt.add_argument(
        "--filter-decorrelation",
        type=float,
        metavar="D",
        help="add D × the mean squared correlation between each pair of translation filters, so that "
        "they cannot all become one map (CellPrep models only; default: "
        f"{TrainConfig.filter_decorrelation:g}, off)",
    )
    add_device_option(opt)
    data = parser.add_argument_group("data")
    data.add_argument(
        "--normalization",
        choices=("minmax", "percentile"),
        help="intensity scaling (default: the --init model's, else minmax)",
    )
    add_channel_axis_option(data)
    data.add_argument(
        "--val-fraction",
        type=float,
        help="share of labeled pixels held out for validation, "
        f"in blocks (default: {DEFAULT_VAL_FRACTION}; none with --init unless --painted, whose held-out strokes "
        "choose the pixel classifier's weight; 0 = no validation, the last epoch is kept)",
    )
    data.add_argument(
        "--val-images", metavar="DIR", help="validation image folder (instead of --val-fraction)"
    )
    data.add_argument("--val-masks", metavar="DIR", help="validation mask folder")
    data.add_argument(
        "--no-classifier",
        action="store_true",
        help="with --painted: train the network alone, without the pixel classifier that answers first "
        "and joins its ensemble (the default learns from the classifier's pseudo-labels too)",
    )
