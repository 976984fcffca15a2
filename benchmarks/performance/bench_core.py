"""Core performance figures of napari-cellprep, all measured in one run (a script, not a test).

    python -m benchmarks.performance.bench_core                    # width 16, 2048² and 8192², 2 threads
    python -m benchmarks.performance.bench_core --quick            # width 8, 512² and 1024², a few minutes
    python -m benchmarks.performance.bench_core --width 8 --sizes 1024 2048 --precision bfloat16

Prints: tiled inference time and peak memory of CellPrep (C = 2) and of the plain U-Net of the
same width per image size, and their time ratio against the target 1.15 × (C + 1); peak memory
at the largest size against input + outputs + 1 GiB; training steps per second of both;
achieved GFLOP/s (FLOPs of one tile counted by ``FlopCounterMode``) as a fraction of an fp32
``torch.mm`` 4096²; and MONAI's ``sliding_window_inference`` on the same network and image
(ensemble logits only) against ours (all outputs). Every case runs in a fresh subprocess, so its
peak memory (VmHWM) is its own, and measures the fp32 matmul rate right after its own run, so
both see the same machine load. Cases run with the glibc malloc settings of GUIDE.md; the
``malloc`` part runs the smallest size and training with and without them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MALLOC_ENV = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}
GIB = 1024**3
ARCHS = ("unet", "cellprep")
PARTS = ["inference", "monai", "training", "malloc"]


# ---- cases: each runs in its own interpreter and returns a dict of figures ----


def _peak_rss() -> int:
    """This process's resident-memory high-water mark in bytes (Linux VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _model(architecture: str, width: int, device: str):
    import torch

    from napari_cellprep.engine.checkpoint import LoadedModel, ModelInfo
    from napari_cellprep.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(num_classes=2, architecture=architecture, width=width)
    return LoadedModel(build_model(config).to(device).eval(), ModelInfo(config, ["background", "cell"]))


def _image(size: int):
    import numpy as np

    return np.random.default_rng(0).integers(0, 65535, (size, size), dtype=np.uint16)


def _count_tiles(model) -> list[int]:
    """A counter of the tiles that forward calls of ``model`` (and of its copies) receive."""
    count = [0]
    model.register_forward_pre_hook(lambda _module, args: count.__setitem__(0, count[0] + args[0].shape[0]))
    return count


def _timed(device: str, run, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``run``, in seconds."""
    import torch

    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def _matmul_gflops(device: str, n: int) -> float:
    """GFLOP/s of an fp32 n × n matrix product (best of 3)."""
    import torch

    p, q = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    torch.mm(p, q)
    return 2 * n**3 / _timed(device, lambda: torch.mm(p, q), 3) / 1e9


def case_infer(a: dict) -> dict:
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_cellprep.engine.prediction.inference import OUTPUTS, predict

    loaded = _model(a["arch"], a["width"], a["device"])
    image = _image(a["size"])
    settings = dict(tile=a["tile"], overlap=a["overlap"], batch_size=a["batch"], device=a["device"],
                    outputs=a.get("outputs", OUTPUTS))
    predict(loaded, image[: a["tile"], : a["tile"]], precision=a["precision"], **settings)  # warm-up
    tiles, result = _count_tiles(loaded.model), []

    def run():
        result.clear()  # frees the previous run's outputs first
        result.append(predict(loaded, image, precision=a["precision"], **settings))

    seconds = _timed(a["device"], run, a["repeats"])
    peak, tiles = _peak_rss(), tiles[0] // a["repeats"]
    with torch.inference_mode(), FlopCounterMode(display=False) as flops:
        loaded.model(torch.rand(1, 1, a["tile"], a["tile"], device=a["device"]))
    outputs = sum(v.nbytes for v in vars(result[0]).values() if isinstance(v, np.ndarray))
    return {"seconds": seconds, "tiles": tiles, "peak": peak, "input_bytes": image.nbytes,
            "output_bytes": outputs, "tile_flops": flops.get_total_flops(),
            "mm_gflops": _matmul_gflops(a["device"], a["mm"])}


def case_monai(a: dict) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    from napari_cellprep.engine.images.normalize import Normalization
    from napari_cellprep.engine.prediction.inference import prepare_model

    model = _model(a["arch"], a["width"], a["device"]).model
    if a["prepared"]:
        model = prepare_model(model, torch.device(a["device"]))
    x = torch.from_numpy(Normalization().apply(_image(a["size"])))[None, None].to(a["device"])

    def logits(batch):
        return model(batch).ensemble_logits

    def run(inputs):
        with torch.inference_mode():
            roi, overlap = (a["tile"],) * 2, a["overlap"] / a["tile"]
            return sliding_window_inference(inputs, roi, a["batch"], logits, overlap, mode="gaussian")

    run(x[..., : a["tile"], : a["tile"]])  # warm-up
    tiles = _count_tiles(model)
    seconds = _timed(a["device"], lambda: run(x), a["repeats"])
    return {"seconds": seconds, "tiles": tiles[0] // a["repeats"], "peak": _peak_rss()}


def case_train(a: dict) -> dict:
    import torch

    from napari_cellprep.model import method_loss

    model = _model(a["arch"], a["width"], a["device"]).model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(a["batch"], 1, a["patch"], a["patch"], generator=generator).to(a["device"])
    target = torch.randint(0, 2, (a["batch"], a["patch"], a["patch"]), generator=generator).to(a["device"])

    def step():
        optimizer.zero_grad(set_to_none=True)
        method_loss(model(x), target)[0].backward()
        optimizer.step()

    step()  # warm-up
    seconds = _timed(a["device"], lambda: [step() for _ in range(a["steps"])], 1)
    return {"steps_per_s": a["steps"] / seconds, "peak": _peak_rss()}


CASES = {"infer": case_infer, "monai": case_monai, "train": case_train}


def _child(spec: str) -> None:
    import torch

    a = json.loads(spec)
    torch.set_num_threads(a["threads"])
    print(json.dumps(CASES[a["case"]](a)))


# ---- the driver ----


def run_case(case: str, threads: int, malloc: bool = True, **settings) -> dict:
    """Run one case in a fresh interpreter and return its figures."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env.update(OMP_NUM_THREADS=str(threads), **(MALLOC_ENV if malloc else {}))
    spec = json.dumps(dict(case=case, threads=threads, **settings))
    command = [sys.executable, __file__, "--child", spec]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"case {spec} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--threads", type=int, default=2, help="torch threads per case")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4, help="tiles per inference batch")
    parser.add_argument("--precision", default="float32", help="our inference: float32, bfloat16 or float16")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per inference case (best)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-patch", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="width 8, sizes 512 1024, small training")
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS, help="what to measure")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def _inference(args, tiling: dict) -> dict:
    print("\ninference, all outputs  size  tiles  seconds  ms/tile  GFLOP/s  mm GFLOP/s  of mm  peak GiB",
          " in+out GiB")
    infer = {}
    for size in args.sizes:
        for arch in ARCHS:
            r = infer[arch, size] = run_case("infer", args.threads, arch=arch, size=size, **tiling)
            gflops = r["tile_flops"] * r["tiles"] / r["seconds"] / 1e9
            per_tile = 1000 * r["seconds"] / r["tiles"]
            in_out = (r["input_bytes"] + r["output_bytes"]) / GIB
            print(f"  {arch:19s} {size:6d} {r['tiles']:6d} {r['seconds']:8.2f} {per_tile:8.1f} {gflops:8.1f} "
                  f"{r['mm_gflops']:11.1f} {gflops / r['mm_gflops']:6.0%} {r['peak'] / GIB:9.2f} "
                  f"{in_out:11.2f}")
    print("\nCellPrep / U-Net inference time (target <= 1.15 x (C + 1) = 3.45):")
    for size in args.sizes:
        print(f"  {size}²: {infer['cellprep', size]['seconds'] / infer['unet', size]['seconds']:.2f}")
    big = infer["cellprep", args.sizes[-1]]
    budget = big["input_bytes"] + big["output_bytes"] + GIB
    print(f"\npeak memory at {args.sizes[-1]}², CellPrep: {big['peak'] / GIB:.2f} GiB; "
          f"budget input + outputs + 1 GiB = {budget / GIB:.2f} GiB ({big['peak'] / budget:.0%} of it)")
    return infer


def _monai(args, tiling: dict) -> None:
    """Ours vs MONAI, interleaved: ``--repeats`` rounds of the four cases, one timed run each,
    best per case, so that a change of load during the comparison hits all of them alike."""
    size, once = args.sizes[0], {**tiling, "repeats": 1}
    cases = {"ours": dict(case="infer"), "ours, ensemble only": dict(case="infer", outputs=[]),
             "model as trained": dict(case="monai", prepared=False),
             "prepare_model copy": dict(case="monai", prepared=True)}
    best = {name: float("inf") for name in cases}
    for _ in range(max(1, args.repeats)):
        for name, spec in cases.items():
            r = run_case(spec["case"], args.threads, arch="cellprep", size=size,
                         **{**once, **{k: v for k, v in spec.items() if k != "case"}})
            best[name], tiles = min(best[name], r["seconds"]), r["tiles"]
    print(f"\nMONAI sliding_window_inference, CellPrep, {size}², gaussian blending, ensemble logits only; "
          f"ours {best['ours']:.2f} s with all outputs ({tiles} tiles); best of {max(1, args.repeats)} "
          "interleaved rounds:")
    print(f"  ours, ensemble only : {best['ours, ensemble only']:.2f} s (labels only; "
          f"all the intermediates cost {best['ours'] / best['ours, ensemble only'] - 1:+.1%})")
    for name in ("model as trained", "prepare_model copy"):
        print(f"  MONAI, {name:13s}: {best[name]:.2f} s; ours / MONAI = {best['ours'] / best[name]:.2f} "
              f"(target <= 1); ensemble only / MONAI = {best['ours, ensemble only'] / best[name]:.2f}")


def _training(args, malloc: bool = True) -> dict:
    training = dict(batch=args.train_batch, patch=args.train_patch, steps=args.train_steps,
                    width=args.width, device=args.device)
    runs = {arch: run_case("train", args.threads, malloc, arch=arch, **training) for arch in ARCHS}
    return {arch: r["steps_per_s"] for arch, r in runs.items()}


def _malloc(args, tiling: dict) -> None:
    size = args.sizes[0]
    print(f"\nglibc malloc settings off vs on ({size}² inference, training), time off / time on:")
    train = {malloc: _training(args, malloc) for malloc in (False, True)}
    for arch in ARCHS:
        off, on = (run_case("infer", args.threads, m, arch=arch, size=size, **tiling) for m in (False, True))
        print(f"  {arch:8s}: inference {off['seconds']:.2f} / {on['seconds']:.2f} s = "
              f"{off['seconds'] / on['seconds']:.2f} "
              f"(peak {off['peak'] / GIB:.2f} / {on['peak'] / GIB:.2f} GiB); "
              f"training {train[True][arch] / train[False][arch]:.2f}")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.child:
        _child(args.child)
        return
    if args.quick:
        args.width, args.sizes = 8, [512, 1024]
        args.train_batch, args.train_patch, args.train_steps = 2, 128, 2
    args.sizes = sorted(args.sizes)
    tiling = dict(tile=args.tile, overlap=args.overlap, batch=args.batch, repeats=args.repeats, width=args.width,
                  device=args.device, precision=args.precision, mm=2048 if args.quick else 4096)
    print(f"napari-cellprep core benchmark: width {args.width}, device {args.device}, {args.threads} threads,"
          f" tile {args.tile}, overlap {args.overlap}, batch {args.batch}, precision {args.precision}; "
          f"glibc malloc settings on unless stated; load average {os.getloadavg()[0]:.1f}")
    if "inference" in args.parts:
        _inference(args, tiling)
    if "monai" in args.parts:
        _monai(args, tiling)
    if "training" in args.parts:
        train = _training(args)
        print(f"\ntraining, batch {args.train_batch} of {args.train_patch}²: "
              f"U-Net {train['unet']:.3f} steps/s, CellPrep {train['cellprep']:.3f} steps/s "
              f"(time ratio {train['unet'] / train['cellprep']:.2f})")
    if "malloc" in args.parts:
        _malloc(args, tiling)
    load = os.getloadavg()[0]
    print(f"\nload average at the end: {load:.1f} (other work on the machine inflates wall times)")


if __name__ == "__main__":
    main()
