"""Issue #11's bar: a 24576² uint16 zarr image predicted with 2 workers, every process under
1.5 GiB, its labels agreeing with an in-memory prediction of an interior window.

    python -m benchmarks.performance.big_image_bar make  --image big.zarr            # 1.1 GiB of pixels
    python -m benchmarks.performance.big_image_bar run   --image big.zarr --labels labels.zarr --json bar.json
    python -m benchmarks.performance.big_image_bar check --image big.zarr --labels labels.zarr --json bar.json
    python -m benchmarks.performance.big_image_bar inmemory --json bar.json --sides 4096 8192   # [24576: hours]
    python -m benchmarks.performance.big_image_bar inmemory --json bar.json --sides 24576 --model tiny.cellprep
    python -m benchmarks.performance.big_image_bar precision --image big.zarr --labels labels.zarr --json bar.json

The image tiles a real NIST sample and its mirror images (period 512 px, no seams), so every
window of a whole number of periods has exactly the whole image's histogram. ``run`` times
``cellprep predict big.zarr --out labels.zarr --workers 2 --model default`` and records every
process's peak memory; ``check`` predicts the window in memory (also measuring that pass's peak)
and counts agreeing pixels. ``inmemory`` measures the peak of the in-memory path
(``cellprep predict IMAGE.zarr --out DIR``, TIFF output) on images of the given sides, to fit
peak = a + b · pixels. ``precision`` times the ``run`` command twice, one after the other: before
issue #41 (``--precision float32``) and with the default (``auto``), each into its own store
(``--labels`` with ``-float32`` / ``-auto`` before the suffix), and counts the pixels whose labels
agree. The window starts on the global tile grid (a multiple of the
192-px stride), so both passes place their tiles alike away from the window's edges.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from benchmarks.harness.proctree import run_measured  # noqa: E402

SIDE = 24576
PERIOD = 512
SAMPLE = Path(__file__).resolve().parents[2] / "src/napari_cellprep/samples/nist_img_046307.tif"


def period_tile() -> np.ndarray:
    """A 512² uint16 tile: the sample and its mirror images, seamless when repeated."""
    import tifffile

    a = tifffile.imread(SAMPLE)
    return np.block([[a, a[:, ::-1]], [a[::-1], a[::-1, ::-1]]])


def make(path: Path, side: int = SIDE, chunk: int = 1024) -> None:
    """Write the tiled image band by band (memory: one band of ``chunk`` rows)."""
    import zarr

    tile = period_tile()
    array = zarr.create_array(path, shape=(side, side), chunks=(chunk, chunk), dtype="uint16")
    band = np.tile(tile, (chunk // PERIOD, side // PERIOD))
    for top in range(0, side, chunk):
        array[top : top + chunk] = band
    print(f"wrote {path}: {side}² uint16, {array.nbytes / 2**30:.2f} GiB of pixels")


def run(image: Path, labels: Path, record: dict, workers: int, resume: bool = False) -> None:
    options = ["--workers", str(workers), "--model", "default"] + (["--resume"] if resume else [])
    seconds, code, peaks = run_measured(["cellprep", "predict", str(image), "--out", str(labels), *options])
    record["resume" if resume else "run"] = {
        "command": " ".join(["cellprep predict", image.name, "--out", labels.name, *options]),
        "exit": code, "seconds": round(seconds, 1),
        "processes": sorted(peaks.values(), key=lambda e: -e["peak_bytes"]),
    }
    for entry in record["resume" if resume else "run"]["processes"]:
        print(f"{entry['peak_bytes'] / 2**30:6.3f} GiB  {entry['cmdline'][:100]}")
    print(f"exit {code} after {seconds:.0f} s")


def precision(image: Path, labels: Path, record: dict, workers: int) -> None:
    """``cellprep predict`` with ``workers`` workers in float32 and in the default precision, in one run."""
    import zarr

    runs = {}
    for name, option in (("float32", ["--precision", "float32"]), ("auto", [])):
        out = labels.with_name(f"{labels.stem}-{name}{labels.suffix}")
        options = ["--workers", str(workers), "--model", "default", "--overwrite", *option]
        seconds, code, peaks = run_measured(["cellprep", "predict", str(image), "--out", str(out), *options])
        stored = zarr.open_group(out, mode="r").attrs["cellprep"]["settings"]["precision"] if code == 0 else None
        runs[name] = {
            "command": " ".join(["cellprep predict", image.name, "--out", out.name, *options]), "exit": code,
            "seconds": round(seconds, 1), "precision": stored,
            "megapixels_per_second": round(zarr.open_array(image, mode="r").size / 1e6 / seconds, 4),
            "peak_gib": round(max(e["peak_bytes"] for e in peaks.values()) / 2**30, 3),
        }
        print(runs[name], flush=True)
    if all(run["exit"] == 0 for run in runs.values()):
        a, b = (zarr.open_array(labels.with_name(f"{labels.stem}-{n}{labels.suffix}"), path="labels", mode="r")
                for n in runs)
        same = sum(int((a[top : top + 1024] == b[top : top + 1024]).sum()) for top in range(0, a.shape[0], 1024))
        runs["agreement"] = same / a.size
        runs["after_over_before_time"] = round(runs["auto"]["seconds"] / runs["float32"]["seconds"], 3)
    record["precision"] = runs
    print(json.dumps({k: v for k, v in runs.items() if not isinstance(v, dict)}))


def check(image: Path, labels: Path, record: dict, window: int, offset: int) -> None:
    import torch
    import zarr

    from napari_cellprep.engine.checkpoint import load_default
    from napari_cellprep.engine.prediction.inference import predict

    big, out = zarr.open_array(image, mode="r"), zarr.open_group(labels, mode="r")
    assert out.attrs["cellprep"]["complete"], "the labels store is unfinished"
    rows = slice(offset, offset + window)
    crop = big[rows, rows]
    whole = np.zeros(65536, np.int64)
    for top in range(0, big.shape[0], 1024):  # the whole image's histogram, band by band
        whole += np.bincount(big[top : top + 1024].ravel(), minlength=65536)
    same_histogram = np.array_equal(np.bincount(crop.ravel(), minlength=65536) * big.size, whole * crop.size)
    torch.set_num_threads(2)
    start = time.perf_counter()
    ref = predict(load_default(), crop).labels
    seconds = time.perf_counter() - start
    got = out["labels"][rows, rows]
    margin = 64
    record["check"] = {
        "window": [offset, offset + window], "histogram_equal": bool(same_histogram),
        "agreement": float((got == ref).mean()),
        "agreement_without_64px_margin": float((got == ref)[margin:-margin, margin:-margin].mean()),
        "in_memory_seconds": round(seconds, 1),
        "in_memory_window_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(record["check"], indent=1))


def inmemory(record: dict, sides: list[int], folder: Path, model: str = "default") -> None:
    """Peak memory of the in-memory path (TIFF output) on tiled images of each side, and the
    straight line through them (with the sides measured before, kept in ``record``)."""
    runs = [r for r in record.get("inmemory", {}).get("runs", []) if r["side"] not in sides]
    for side in sides:
        image, out = folder / f"inmemory{side}.zarr", folder / f"inmemory{side}-tifs"
        if not image.exists():
            make(image, side)
        command = ["cellprep", "predict", str(image), "--out", str(out), "--model", model, "--overwrite"]
        seconds, code, peaks = run_measured(command)
        peak = max(e["peak_bytes"] for e in peaks.values())
        runs.append({"side": side, "exit": code, "seconds": round(seconds, 1), "peak_gib": round(peak / 2**30, 3),
                     "command": f"cellprep predict inmemory{side}.zarr --out DIR --model {Path(model).name}"})
        print(runs[-1])
    if model != "default":  # a lower bound: the same path with a cheaper model's activations
        record["inmemory_" + Path(model).stem] = runs
        print(runs)
        return
    runs.sort(key=lambda r: r["side"])
    pixels = np.array([r["side"] ** 2 for r in runs], float)
    b, a = np.polyfit(pixels, [r["peak_gib"] for r in runs], 1)
    record["inmemory"] = {"runs": runs, "fit_gib": {"a": round(a, 3), "b_per_megapixel": round(b * 1e6, 5)},
                          "extrapolated_24576_gib": round(a + b * SIDE**2, 2)}
    print(record["inmemory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["make", "run", "check", "inmemory", "precision"])
    parser.add_argument("--sides", type=int, nargs="+", default=[4096, 8192], help="inmemory: image sides")
    parser.add_argument("--model", default="default", help="inmemory: the model (another: a lower bound)")
    parser.add_argument("--image", type=Path, default=Path("big.zarr"))
    parser.add_argument("--labels", type=Path, default=Path("labels.zarr"))
    parser.add_argument("--json", type=Path, default=Path("bar.json"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="run: continue an unfinished --labels store")
    parser.add_argument("--side", type=int, default=SIDE, help="make: the image's side (a multiple of 1024)")
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument(
        "--offset", type=int, default=10752, help="a multiple of the tile stride (192) and the period (512)"
    )
    args = parser.parse_args()
    record = json.loads(args.json.read_text()) if args.json.exists() else {}
    if args.step == "make":
        make(args.image, args.side)
        return
    if args.step == "run":
        run(args.image, args.labels, record, args.workers, args.resume)
    elif args.step == "precision":
        precision(args.image, args.labels, record, args.workers)
    elif args.step == "inmemory":
        inmemory(record, args.sides, args.image.parent, args.model)
    else:
        check(args.image, args.labels, record, args.window, args.offset)
    args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
