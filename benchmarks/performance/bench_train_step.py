"""Time one fine-tuning step of the bundled model in float32 and under bfloat16 autocast.

Prints seconds per step for each, alternating them (float32, bfloat16, float32, …) so that a
busy machine slows both alike, and their ratio. ``TrainConfig.cpu_bfloat16`` takes the
bfloat16 path only where the CPU has it in hardware; here it is timed regardless, and the
line says whether this CPU does.

    python -m benchmarks.performance.bench_train_step --threads 1 --batch 8 --patch 128 --repeats 2
"""

from __future__ import annotations

import argparse
import time

import torch

from napari_cellprep.engine.checkpoint import default_checkpoint_path, load_checkpoint
from napari_cellprep.engine.devices import cpu_has_native_bfloat16
from napari_cellprep.model.loss import method_loss


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the dock trains on one core less than the CPU has)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement (after one warm-up step)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per precision, alternating")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_checkpoint(default_checkpoint_path(), "cpu").model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, model.config.in_channels, args.patch, args.patch, generator=generator)
    y = torch.randint(0, model.config.num_classes, (args.batch, args.patch, args.patch), generator=generator)

    def step(bfloat16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            loss = method_loss(model(x), y)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for bfloat16 in (False, True):
            step(bfloat16)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(bfloat16)
            times[bfloat16].append((time.perf_counter() - start) / args.steps)
    fp32, bf16 = min(times[False]), min(times[True])
    print(
        f"batch {args.batch}×{args.patch}², {args.threads} thread(s); bfloat16 in hardware: {cpu_has_native_bfloat16()}"
    )
    print(f"float32  {fp32:.3f} s/step (best of {args.repeats})")
    print(f"bfloat16 {bf16:.3f} s/step (best of {args.repeats}): {fp32 / bf16:.2f}× faster")


if __name__ == "__main__":
    main()
