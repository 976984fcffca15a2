"""Does this machine make a stored run of ``reproduce.py`` again? Re-make its first epochs and compare.

    python -m benchmarks.paper.rerun_check nist-phase/clean/fold1/seed0/cellprep-product [--epochs 1]
    ONEDNN_MAX_CPU_ISA=AVX2 python -m benchmarks.paper.rerun_check KEY        # the same code, other kernels

Each key is trained again by ``reproduce.execute`` for its first ``--epochs`` epochs, on its split,
seed, steps per epoch and torch thread count (the harness's learning rate is constant, so the first
epochs do not depend on how many follow), and its training loss and validation mIoU per epoch are
printed beside the stored ones with the first epoch where they differ. A run that differs was made
with other code or on a CPU whose kernels round otherwise (run it from a checkout of another commit
to tell the two apart). Checkpoints go
to a temporary folder. Exit status 0 when every key is made again bit for bit, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from benchmarks.harness import datasets, report
from benchmarks.paper import reproduce


def first_difference(stored: dict, remade: dict, epochs: int) -> int | None:
    """The first epoch (from 1) whose training loss or validation mIoU differs, if any."""
    for e in range(epochs):
        if any(stored[c][e] != remade[c][e] for c in ("train_loss", "val_miou")):
            return e + 1
    return None


def table(stored: dict, remade: dict, epochs: int) -> list[str]:
    lines = [
        "| epoch | train loss, stored | re-made | val mIoU, stored | re-made |",
        "|---|---|---|---|---|",
    ]
    for e in range(epochs):
        lines.append(
            f"| {e + 1} | {stored['train_loss'][e]:.6f} | {remade['train_loss'][e]:.6f} | "
            f"{stored['val_miou'][e]:.4f} | {remade['val_miou'][e]:.4f} |"
        )
    return lines


def remake(harness, run, preset, epochs: int, threads: int) -> dict:
    """The curves of ``run`` trained for its first ``epochs`` epochs with ``threads`` torch threads."""
    schedule = harness.TRAINING.get(run.method, {}).get("lr_schedule", harness.TrainConfig().lr_schedule)
    if schedule != "constant":
        raise SystemExit(f"{run.key}: its learning rate schedule depends on the total epochs")
    short = dataclasses.replace(preset, epochs={**preset.epochs, run.dataset: epochs})
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as models:
            return harness.execute(run, short, Path(models))["curves"]
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("keys", nargs="+", help="run keys of the stored results")
    parser.add_argument("--epochs", type=int, default=1, help="how many epochs to make again (default 1)")
    parser.add_argument("--results", type=Path, default=datasets.REPO / "docs" / "results" / "results.json")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    missing = [k for k in args.keys if k not in results["runs"]]
    if missing:
        parser.error(f"not in {args.results}: {', '.join(missing)}")
    machine = report.provenance()
    harness = reproduce
    preset = harness.PRESETS[results["preset"]]
    runs = {r.key: r for p in harness.PRESETS.values() for plan in p.plans.values() for r in plan}
    command = report.command_line("rerun_check.py", argv)
    print(f"`{command}`\n\nMade again with commit {machine.pop('commit')} on {machine}")
    same = True
    for key in args.keys:
        if key not in runs:
            raise SystemExit(f"{key} is in none of the plans of {harness.__file__}")
        stored = results["runs"][key]
        epochs = min(args.epochs, len(stored["curves"]["val_miou"]))
        remade = remake(harness, runs[key], preset, epochs, stored.get("torch_threads", 1))
        differs = first_difference(stored["curves"], remade, epochs)
        same &= differs is None
        verdict = f"differs from epoch {differs}" if differs else f"identical through epoch {epochs}"
        made_with = stored.get("provenance", "no provenance (made before 2026-12-06)")
        print(f"\n{key}: {verdict}; stored run: {made_with}\n")
        print("\n".join(table(stored["curves"], remade, epochs)))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
