"""Pixels per second per core of the big-image path beside the in-memory path and the model's FLOP
floor, in float32 and 16-bit, and the scaling from one to two dask workers, in one run (issue #41).

    python -m benchmarks.performance.throughput --dir /tmp/throughput
    python -m benchmarks.performance.throughput --dir /tmp/throughput --side 1024 --block 576 --repeats 1  # quick

On one torch thread in this process, with the bundled model, labels only (what ``cellprep predict``
writes by default), tile 256 and overlap 64, on a ``--side``² uint16 zarr image that tiles a real
NIST sample (``big_image_bar.make``), for each ``--precisions`` type, the precisions interleaved in
every repeat:

- **in memory**: ``predict`` on the whole image (``cellprep predict IMAGE --out DIR``'s path);
- **big image**: ``predict_to_zarr_iter`` in this process (``cellprep predict IMAGE --out X.zarr``'s
  path: streamed statistics, blocks of ``--block`` pixels with their halo tiles, zarr writes);
- **floor**: the model's FLOPs per output pixel (``FlopCounterMode`` on one tile × the tiles the
  in-memory pass runs ÷ the image's pixels) ÷ the rate of a 2048² ``torch.mm`` in the same type,
  measured right after that repeat's runs: the pixels per second the model's arithmetic allows.

Then ``cellprep predict IMAGE --out X.zarr --workers N --block B`` for N = 1 and 2 (precision
``auto``; wall time including the cluster's start). Figures are medians over ``--repeats``; the
ratios compare runs made minutes apart on the same machine. Writes ``--json`` and its section of
``--page``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from statistics import median

import torch

from benchmarks.harness import datasets
from benchmarks.harness import report as reports
from benchmarks.harness.sections import write_section
from benchmarks.performance.big_image_bar import make
from napari_cellprep.engine.bigimage.outofcore import LocalExecutor, predict_to_zarr_iter
from napari_cellprep.engine.checkpoint import LoadedModel, load_default
from napari_cellprep.engine.devices import PRECISIONS, cpu_has_native_bfloat16
from napari_cellprep.engine.events import drive
from napari_cellprep.engine.images.sources import open_image
from napari_cellprep.engine.prediction.inference import predict

OUT = datasets.REPO / "docs" / "results" / "performance"
TILE, OVERLAP = 256, 64


def matmul_rate(dtype: torch.dtype, n: int = 2048) -> float:
    """FLOP/s of an n × n matrix product in ``dtype`` (median of 3, after one warm-up)."""
    p, q = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
    torch.mm(p, q)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        torch.mm(p, q)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / median(times)


def tile_flops(loaded: LoadedModel) -> int:
    """FLOPs of one forward pass over one tile (the same in every precision)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        loaded.model(torch.rand(1, loaded.info.config.in_channels, TILE, TILE))
    return counter.get_total_flops()


def tile_counter(loaded: LoadedModel) -> list[int]:
    """A count of the tiles every forward pass of ``loaded``'s model (and its prepared copies) gets."""
    count = [0]
    loaded.model.register_forward_pre_hook(lambda _module, args: count.__setitem__(0, count[0] + args[0].shape[0]))
    return count


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure_paths(args: argparse.Namespace, image_path: Path) -> dict:
    """Seconds and tiles of both paths and the matmul rate, per precision, over the repeats."""
    loaded = load_default()
    count = tile_counter(loaded)
    source = open_image(image_path)
    pixels = args.side**2
    record = {p: {"in_memory_s": [], "big_image_s": [], "mm_flops": []} for p in args.precisions}
    tiles = {}
    array = source.array[...]  # the in-memory path holds the image
    for repeat in range(args.repeats):
        for precision in args.precisions:
            count[0] = 0
            seconds = timed(partial(predict, loaded, array, tile=TILE, overlap=OVERLAP, outputs=(), precision=precision))
            tiles["in_memory"], count[0] = count[0], 0
            record[precision]["in_memory_s"].append(seconds)
            out = args.dir / f"paths-{precision}.zarr"
            events = partial(
                predict_to_zarr_iter, loaded, [("", source, str(image_path))], out, tile=TILE, overlap=OVERLAP,
                block=args.block, precision=precision, overwrite=True, executor=LocalExecutor(),
            )
            seconds = timed(lambda: drive(events()))  # noqa: B023  (called at once)
            tiles["big_image"] = count[0]
            record[precision]["big_image_s"].append(seconds)
            record[precision]["mm_flops"].append(matmul_rate(PRECISIONS[precision] or torch.float32))
            print(f"repeat {repeat + 1}, {precision}: in memory {record[precision]['in_memory_s'][-1]:.1f} s, "
                  f"big image {seconds:.1f} s, mm {record[precision]['mm_flops'][-1] / 1e9:.1f} GFLOP/s", flush=True)
    flops_per_pixel = tile_flops(loaded) * tiles["in_memory"] / pixels
    rows = {}
    for precision, r in record.items():
        floor = median(r["mm_flops"]) / flops_per_pixel
        rows[precision] = {
            **{key: [round(v, 2) for v in values] for key, values in r.items() if key.endswith("_s")},
            "mm_gflops": [round(v / 1e9, 1) for v in r["mm_flops"]],
            "in_memory_px_per_s": pixels / median(r["in_memory_s"]),
            "big_image_px_per_s": pixels / median(r["big_image_s"]),
            "floor_px_per_s": floor,
        }
    return {"tiles": tiles, "flops_per_pixel": flops_per_pixel, "precisions": rows}


def measure_workers(args: argparse.Namespace, image_path: Path) -> dict:
    """Wall seconds of ``cellprep predict --workers N`` for N = 1, 2, interleaved over the repeats."""
    seconds: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for workers in (1, 2):
            out = args.dir / f"workers{workers}.zarr"
            shutil.rmtree(out, ignore_errors=True)
            command = [sys.executable, "-m", "napari_cellprep.cli", "predict", str(image_path), "--out", str(out),
                       "--workers", str(workers), "--block", str(args.block), "--model", "default"]
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            seconds[workers].append(time.perf_counter() - start)
            print(f"{workers} worker(s): {seconds[workers][-1]:.1f} s", flush=True)
    pixels = args.side**2
    return {str(n): {"seconds": [round(s, 1) for s in values], "px_per_s": pixels / median(values)}
            for n, values in seconds.items()} | {"speedup_2_vs_1": median(seconds[1]) / median(seconds[2])}


def report(record: dict) -> list[str]:
    p, paths, workers = record["provenance"], record["paths"], record["workers"]
    lines = [
        (
            f"Command: `{record['command']}` ({record['date']}, commit {p['commit'][:12]}; {p['cpu']}, {p['cpu_id']}, "
            f"{p['cpu_kernels']} kernels; native CPU bfloat16: {record['native_cpu_bfloat16']}; torch {p['torch']}; "
            f"load average {record['load_start']:.1f} at the start, {record['load_end']:.1f} at the end)."
        ),
        "",
        (
            f"{record['side']}² uint16, the bundled model, labels only, tile {TILE}, overlap {OVERLAP}, one torch thread, "
            f"median of {record['repeats']}; the big-image path in blocks of {record['block']} px "
            f"({paths['tiles']['big_image']} tiles against {paths['tiles']['in_memory']} in memory). "
            f"The model costs {paths['flops_per_pixel'] / 1e3:.1f} kFLOP per output pixel."
        ),
        "",
        (
            "| precision | in memory (px/s/core) | big image (px/s/core) | big / in memory | FLOP floor (px/s/core) | "
            "in memory / floor | 2048² matmul (GFLOP/s) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for precision, r in paths["precisions"].items():
        lines.append(
            f"| {precision} | {r['in_memory_px_per_s']:,.0f} | {r['big_image_px_per_s']:,.0f} | "
            f"{r['big_image_px_per_s'] / r['in_memory_px_per_s']:.2f} | {r['floor_px_per_s']:,.0f} | "
            f"{r['in_memory_px_per_s'] / r['floor_px_per_s']:.0%} | {median(r['mm_gflops']):.1f} |"
        )
    one, two = workers["1"], workers["2"]
    lines += [
        "",
        (
            f"`cellprep predict` with dask workers (precision auto, blocks of {record['block']} px, wall time with the "
            f"cluster's start): 1 worker {one['px_per_s']:,.0f} px/s ({', '.join(map(str, one['seconds']))} s), "
            f"2 workers {two['px_per_s']:,.0f} px/s ({', '.join(map(str, two['seconds']))} s): "
            f"**{workers['speedup_2_vs_1']:.2f}×**."
        ),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("throughput-bench"), help="where the image and outputs go")
    parser.add_argument("--side", type=int, default=2048, help="image side (a multiple of 1024)")
    parser.add_argument("--block", type=int, default=1152, help="block side of the big-image path (the tile stride's multiple)")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=list(PRECISIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=OUT / "throughput.json")
    parser.add_argument("--page", type=Path, default=OUT / "precision.md", help="the page whose section it writes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.dir.mkdir(parents=True, exist_ok=True)
    image_path = args.dir / f"image{args.side}.zarr"
    if not image_path.exists():
        make(image_path, args.side)
    record = {
        "command": "python -m benchmarks.performance.throughput " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d"), "provenance": reports.provenance(),
        "native_cpu_bfloat16": cpu_has_native_bfloat16(), "side": args.side, "block": args.block,
        "repeats": args.repeats, "load_start": os.getloadavg()[0],
    }
    record["paths"] = measure_paths(args, image_path)
    record["workers"] = measure_workers(args, image_path)
    record["load_end"] = os.getloadavg()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    lines = report(record)
    write_section(args.page, "throughput", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
