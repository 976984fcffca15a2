"""``cellprep predict ... --out X.zarr``: out-of-core prediction into a zarr store, in this process
or on dask.distributed workers (``--workers N``, ``--scheduler ADDRESS``)."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from ..engine.bigimage.outofcore import LocalExecutor, predict_to_zarr_iter
from ..engine.devices import describe_device
from ..engine.images.io import list_images
from ..engine.images.sources import ZARR_SUFFIX, open_image
from .common import CommandError, inference_options, load_model_option, warn_if_emulated, with_progress_bar


def wants_zarr(args: argparse.Namespace) -> bool:
    """Whether this run writes a zarr store (and may use workers, blocks and resume)."""
    zarr = args.out.rstrip("/").endswith(ZARR_SUFFIX)
    if not zarr and (args.workers or args.scheduler or args.resume or args.block):
        raise CommandError("--workers, --scheduler, --resume and --block need a zarr store: --out NAME.zarr")
    return zarr


def _groups(paths: list[Path]) -> list[str]:
    """One group per image named by its file stem; a lone image is the store's root."""
    if len(paths) == 1:
        return [""]
    stems = [path.name[: -len(ZARR_SUFFIX)] if path.name.endswith(ZARR_SUFFIX) else path.stem for path in paths]
    if len(set(stems)) != len(stems):
        raise CommandError("two inputs have the same file name without extension: their groups would collide")
    return stems


def run_zarr(args: argparse.Namespace, outputs: tuple[str, ...]) -> int:
    """Predict every input into the store ``args.out`` (one group per image for several)."""
    paths = list_images(args.inputs)
    loaded = load_model_option(args.model, args.device)
    options = inference_options(args)
    channel_axis = options.pop("channel_axis")
    images = [(group, open_image(path), str(path.resolve())) for group, path in zip(_groups(paths), paths)]
    distributed = bool(args.workers or args.scheduler)
    device = loaded.device
    if distributed:
        from ..engine.bigimage.cluster import dask_executor

        device = torch.device("cpu" if args.device == "auto" else args.device)
        context = dask_executor(args.workers, args.scheduler, str(device))
        where = f"scheduler {args.scheduler}" if args.scheduler else f"{args.workers} local worker processes"
    else:
        context = nullcontext(LocalExecutor())
        where = describe_device(loaded.device)
    with context as executor:
        precision = executor.precision(args.precision, loaded)  # "auto": what the workers' hardware picks
        print(f"model {loaded.label} on {where} in {precision}")
        if not args.scheduler:
            warn_if_emulated(precision, device)
        events = predict_to_zarr_iter(
            loaded, images, args.out, channel_axis=channel_axis, block=args.block, outputs=outputs,
            precision=precision, resume=args.resume, overwrite=args.overwrite, executor=executor, **options,
        )
        try:
            out = with_progress_bar(events, unit="block")
        except KeyboardInterrupt:
            print(f"cellprep: {args.out} is unfinished; continue with the same command and --resume", file=sys.stderr)
            raise
    print(f"wrote {len(paths)} image(s) to {out}")
    return 0


def add_zarr_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--scheduler``, ``--resume`` and ``--block`` (for ``--out NAME.zarr``)."""
    group = parser.add_argument_group("big images and clusters (with --out NAME.zarr)")
    group.add_argument(
        "--workers", type=int, metavar="N", help="run on a local dask cluster of N worker processes"
    )
    group.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on an existing dask cluster (e.g. tcp://host:8786)"
    )
    group.add_argument(
        "--resume", action="store_true", help="finish an interrupted run: blocks already written are kept"
    )
    group.add_argument(
        "--block", type=int, metavar="PIXELS", help="output block side (default: sized to ~128 MiB of maps)"
    )
