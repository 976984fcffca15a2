"""Scaling of ``cellprep predict --workers N``: throughput with 1 and 2 worker processes and the
peak memory of every process, for one big image and for a folder of many tiles, in one run.

    python -m benchmarks.performance.bench_scale --dir /tmp/scale --json docs/results/scaling/scaling-16384.json

The big image (default 16384², uint16, zarr) tiles a real NIST sample seamlessly
(``big_image_bar.period_tile``); the folder holds ``--tiles`` 256² TIFF crops of it at
different offsets. Each case runs ``cellprep predict INPUT --out OUT.zarr --workers N --model
default`` under ``proctree.run_measured`` (the peak is each process's VmHWM), so the figures
include starting the cluster. The per-block cost (worker-seconds per block) is what the SLURM
estimate in docs/results/scaling.md scales from.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from benchmarks.harness.proctree import run_measured  # noqa: E402
from benchmarks.performance.big_image_bar import make, period_tile  # noqa: E402

GiB = 2**30


def make_folder(folder: Path, count: int, side: int = 256) -> None:
    """``count`` TIFF crops of the seamless sample tiling, each at its own offset."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    tile = np.tile(period_tile(), (2, 2))
    rng = np.random.default_rng(0)
    for k in range(count):
        top, left = rng.integers(0, tile.shape[0] - side, 2)
        tifffile.imwrite(folder / f"tile_{k:04d}.tif", tile[top : top + side, left : left + side])


def measure(source: Path, out: Path, workers: int) -> dict:
    """One run: seconds, blocks, and the peak memory of the client and of each worker process."""
    import zarr

    shutil.rmtree(out, ignore_errors=True)
    command = ["cellprep", "predict", str(source), "--out", str(out), "--workers", str(workers), "--model", "default"]
    seconds, code, peaks = run_measured(command)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit status {code}")
    root = zarr.open_group(out, mode="r")
    groups = [root] if "done" in root else [root[name] for name in root.group_keys()]
    blocks = sum(int(group["done"].size) for group in groups)
    pixels = sum(int(np.prod(group["labels"].shape)) for group in groups)
    workers_peak = [e["peak_bytes"] for e in peaks.values() if "multiprocessing.spawn" in e["cmdline"]]
    client = max(e["peak_bytes"] for e in peaks.values() if "cellprep predict" in e["cmdline"])
    return {
        "workers": workers, "seconds": round(seconds, 1), "blocks": blocks, "megapixels": round(pixels / 1e6, 1),
        "megapixels_per_second": round(pixels / 1e6 / seconds, 3),
        "worker_seconds_per_block": round(seconds * workers / blocks, 2),
        "worker_peaks_gib": [round(p / GiB, 3) for p in sorted(workers_peak, reverse=True)],
        "client_peak_gib": round(client / GiB, 3),
        "command": " ".join(["cellprep", "predict", source.name, "--out", out.name, *command[5:]]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("scale-bench"), help="where inputs and outputs go")
    parser.add_argument("--side", type=int, default=16384)
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--json", type=Path, default=Path("scaling.json"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    image, folder = args.dir / f"image{args.side}.zarr", args.dir / f"tiles{args.tiles}"
    if not image.exists():
        make(image, args.side)
    if not folder.exists():
        make_folder(folder, args.tiles)
    record: dict = {}
    for name, source in (("image", image), ("folder", folder)):
        runs = [measure(source, args.dir / f"{name}-w{n}.zarr", n) for n in (1, 2)]
        record[name] = {"runs": runs, "speedup_2_vs_1": round(runs[0]["seconds"] / runs[1]["seconds"], 2)}
        for run in runs:
            print(json.dumps(run))
        print(f"{name}: 2 workers are {record[name]['speedup_2_vs_1']}x as fast as 1")
    args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
