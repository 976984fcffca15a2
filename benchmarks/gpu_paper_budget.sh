#!/usr/bin/env bash
# The paper's budget on one GPU (issue #10 §3): nist-phase at low light, 3 folds, seed 0; U-Net and
# the paper's CellPrep for 300 epochs of whole 256² tiles at batch 16, and U-Net at that
# CellPrep's training FLOPs; three runs at a time on the one GPU. Results: docs/gpu-300/results.md.
# Resumable: a second call skips finished runs. Meant to end within 6 minutes on one large GPU
# (an estimate, not yet measured: no GPU has run it).
set -euo pipefail
cd "$(dirname "$0")/.."
timeout "${CELLPREP_GPU_SECONDS:-350}" python benchmarks/reproduce.py --preset gpu-300 --plan gpu \
    --jobs 3 --out docs/gpu-300 --models runs/gpu-300 || echo "stopped by the time limit; run again to resume"
python benchmarks/reproduce.py --preset gpu-300 --plan gpu --out docs/gpu-300 --report-only
