#!/usr/bin/env bash
# The paper's budget on one GPU (issue #10 §3): nist-phase at low light, 3 folds, seed 0; U-Net and
# the paper's CellPrep for 300 epochs of whole 256² tiles at batch 16, and U-Net at that
# CellPrep's training FLOPs; three runs at a time on the one GPU. Results: docs/results/gpu-300/results.md.
# Resumable: a second call skips finished runs. Meant to end within 6 minutes on one large GPU
# (an estimate, not yet measured: no GPU has run it).
#
# Runs from a checkout without installing the package (src/ and the checkout go on PYTHONPATH); it needs torch with
# CUDA, numpy, scipy, scikit-image, tifffile, imageio and safetensors. The labeled data is read from
# ../shared/data, or from the folder CELLPREP_DATA names (only nist-phase/ is needed). PYTHON picks
# the interpreter (default python3); CELLPREP_GPU_SECONDS the time limit of the training (default 350).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c '
import sys, torch
if not torch.cuda.is_available():
    sys.exit(
        f"benchmarks/paper/gpu_paper_budget.sh needs a CUDA GPU, and torch {torch.__version__} sees none: its "
        "nine 300-epoch runs are meant for a GPU. Run it where one is, or call python -m benchmarks.paper.reproduce "
        "--preset gpu-300 --plan gpu yourself to train on the CPU anyway."
    )
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
'
status=0
timeout "${CELLPREP_GPU_SECONDS:-350}" "$python" -m benchmarks.paper.reproduce --preset gpu-300 --plan gpu \
    --jobs 3 --out docs/results/gpu-300 --models runs/gpu-300 || status=$?
if [ "$status" -eq 124 ]; then
    echo "stopped by the time limit; run again to resume"
elif [ "$status" -ne 0 ]; then
    exit "$status"
fi
"$python" -m benchmarks.paper.reproduce --preset gpu-300 --plan gpu --out docs/results/gpu-300 --report-only
