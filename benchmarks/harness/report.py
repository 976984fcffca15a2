"""Reports and provenance: what a run was made with (commit, CPU, GPU, torch), where the runs of
a report were made, the command that made a report, and writing it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.harness.datasets import REPO


def provenance(repo: Path | None = None) -> dict[str, str | None]:
    """What a run was made with: the commit of ``repo`` (default: this checkout; ``+dirty`` with
    uncommitted changes), the CPU (``cpu_identity``: a virtual machine may name it only "Intel(R)
    Xeon(R) Processor"), the GPU it trained on (``None`` on the CPU) and the torch version. A run's
    numbers can change with any of them: the same code, seed and thread count give another first
    epoch when oneDNN is held to AVX2 (``benchmarks/paper/rerun_check.py``)."""
    git = ["git", "-C", str(repo or REPO)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
        commit = commit.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None  # training's device "auto"
    return {"commit": commit, **cpu_identity(), "gpu": gpu, "torch": torch.__version__}


KERNEL_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR")
"""Environment variables that change which CPU kernels torch runs, hence a run's numbers."""


def cpu_identity() -> dict[str, str]:
    """``cpu``: the model name; ``cpu_id``: vendor, family, model and stepping (``/proc/cpuinfo``,
    Linux); ``cpu_kernels``: torch's CPU capability and any of ``KERNEL_CAPS`` that is set."""
    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break  # the first processor is enough
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    ident = [fields.get(k) for k in ("vendor_id", "cpu family", "model", "stepping")]
    kernels = [torch.backends.cpu.get_cpu_capability()]
    kernels += [f"{name}={os.environ[name]}" for name in KERNEL_CAPS if os.environ.get(name)]
    return {
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "cpu_id": "{} family {} model {} stepping {}".format(*ident) if all(ident) else platform.machine(),
        "cpu_kernels": ", ".join(kernels),
    }


def machines(results: dict) -> str:
    """Where the runs were made, from their provenance: each GPU (or CPU) and torch version with its
    run count; "not recorded" when no run records one (runs made before provenance was stored)."""
    counts: dict[str, int] = {}
    for r in results.values():
        if "provenance" in r:
            p = r["provenance"]
            where = f"{p['gpu']} (CUDA)" if p.get("gpu") else p["cpu"]
            if not p.get("gpu") and "cpu_id" in p:  # runs made before 2026-12-06 name the model only
                where += f" ({p['cpu_id']}; {p['cpu_kernels']} kernels)"
            label = f"{where}, torch {p['torch']}"
            counts[label] = counts.get(label, 0) + 1
    if not counts:
        return (
            f"not recorded by these {len(results)} runs (made before provenance was; the same code and "
            "seed can train otherwise on another CPU: `benchmarks/paper/rerun_check.py`; this report was written "
            f"on {platform.processor() or platform.machine()}, torch {torch.__version__})"
        )
    recorded = sum(counts.values())
    shown = "; ".join(f"{label} ({n} runs)" for label, n in sorted(counts.items()))
    return shown + (f"; {len(results) - recorded} runs record none" if recorded < len(results) else "")


def command_line(script: str, argv: list[str] | None) -> str:
    """How a report names the call that made it: ``python benchmarks/<script> <arguments>``, the
    arguments being ``argv`` or, when it is ``None``, the command line's."""
    return f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])


def write_or_print(lines: list[str], out: Path | None) -> None:
    """A report's lines to the file ``out``, or to standard output without one."""
    text = "\n".join(lines) + "\n"
    if out:
        out.write_text(text)
    else:
        print(text, end="")
