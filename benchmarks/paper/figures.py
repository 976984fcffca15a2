"""Figures like the paper's Fig. 5 (input, truth, U-Net, the paper's CellPrep, the product's
CellPrep) and Fig. 6 (filters and translated images of both CellPreps), from the fold-0, seed-0
models that ``reproduce.py`` saved, on their test images; and the validation curves of those
methods for every fold (seed 0), from ``results.json``, with the ensemble weights before and after.

    python -m benchmarks.paper.figures   # docs/results/{fig5,fig6,curves}_<set>_<condition>.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.harness.datasets import CLASS_NAMES, load_dataset, split  # noqa: E402
from benchmarks.paper.reproduce import PRESETS, PRODUCT_METHOD, Run  # noqa: E402
from napari_cellprep.engine.checkpoint import load_checkpoint  # noqa: E402
from napari_cellprep.engine.prediction.inference import predict  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CASES = [
    ("nist-phase", "clean"),
    ("nist-phase", "very-low-light"),
    ("isbi2012-membrane", "clean"),
    ("vnc-em", "clean"),
]


def _model_path(models: Path, run: Run) -> Path:
    return models / (run.key.replace("/", "_") + ".cellprep")


def figures(models: Path, out: Path, preset_name: str, n_images: int = 3) -> list[Path]:
    preset = PRESETS[preset_name]
    written = []
    for dataset, condition in CASES:
        paths = [
            _model_path(models, Run(dataset, condition, 0, 0, m))
            for m in ("unet", "cellprep", PRODUCT_METHOD)
        ]
        if not all(p.exists() for p in paths):
            continue
        unet, cell, product = map(load_checkpoint, paths)
        titles = ["ground truth", "U-Net", "CellPrep (paper)", "CellPrep (product)"]
        items = load_dataset(dataset, condition)
        test = split(len(items), preset.folds[dataset], 0)[2][:n_images]
        c = len(CLASS_NAMES[dataset])
        fig5, ax5 = plt.subplots(
            len(test), 1 + len(titles), figsize=(3 * (1 + len(titles)), 3 * len(test)), squeeze=False
        )
        fig6, ax6 = plt.subplots(
            2 * len(test), 1 + 2 * c, figsize=(3 * (1 + 2 * c), 6 * len(test)), squeeze=False
        )
        for row, index in enumerate(test):
            image, mask, name = items[index]
            pu = predict(unet, image, outputs=())
            pc = predict(cell, image, outputs=("filters", "translated"))
            pp = predict(product, image, outputs=("filters", "translated"))
            panels = [image, mask, pu.labels, pc.labels, pp.labels]
            for ax, data, title in zip(ax5[row], panels, [name, *titles]):
                ax.imshow(
                    data,
                    cmap="gray" if title == name else "viridis",
                    vmin=None if title == name else 0,
                    vmax=None if title == name else c - 1,
                    interpolation="nearest",
                )
                ax.set_title(title)
                ax.axis("off")
            for half, (which, p) in enumerate((("paper", pc), ("product", pp))):
                axes = ax6[2 * row + half]
                axes[0].imshow(image, cmap="gray")
                axes[0].set_title(f"{name}\n{which} CellPrep")
                for k in range(c):
                    axes[1 + k].imshow(p.filters[k], cmap="magma")
                    axes[1 + k].set_title(f"filter {k + 1}")
                    axes[1 + c + k].imshow(p.translated[k, 0], cmap="gray", vmin=0, vmax=1)
                    axes[1 + c + k].set_title(f"translated t{k + 1}")
                for ax in axes:
                    ax.axis("off")
        for fig, kind in ((fig5, "fig5"), (fig6, "fig6")):
            path = out / f"{kind}_{dataset}_{condition}.png"
            fig.suptitle(f"{dataset}, {condition}, fold 0 seed 0 test images ({preset_name} preset)")
            fig.tight_layout()
            fig.savefig(path, dpi=60)
            plt.close(fig)
            written.append(path)
    return written


CURVE_METHODS = {"unet": "tab:blue", "cellprep": "tab:red", PRODUCT_METHOD: "tab:green"}


def curves(results: dict, out: Path) -> list[Path]:
    """Validation mIoU per epoch, one panel per fold (seed 0), for every set and condition with runs."""
    groups: dict[tuple[str, str], dict[int, dict[str, dict]]] = {}
    for r in results.values():
        if r["method"] in CURVE_METHODS and r["seed"] == 0:
            groups.setdefault((r["dataset"], r["condition"]), {}).setdefault(r["fold"], {})[r["method"]] = r
    written = []
    for (dataset, condition), folds in sorted(groups.items()):
        fig, axes = plt.subplots(1, len(folds), figsize=(4.5 * len(folds), 3.6), squeeze=False, sharey=True)
        for ax, fold in zip(axes[0], sorted(folds)):
            for method, r in sorted(folds[fold].items()):
                label = method
                if method != "unet":
                    w0 = ", ".join(f"{w:.2f}" for w in r["initial_ensemble_weights"])
                    label += f"\nw {w0} → " + ", ".join(f"{w:.2f}" for w in r["ensemble_weights"])
                label += f"\ntest mIoU {r['test']['miou']:.3f}"
                epochs = range(1, len(r["curves"]["val_miou"]) + 1)
                ax.plot(epochs, r["curves"]["val_miou"], color=CURVE_METHODS[method], label=label, marker=".")
            ax.set_title(f"fold {fold}")
            ax.set_xlabel("epoch")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        axes[0, 0].set_ylabel("validation mIoU")
        fig.suptitle(
            f"{dataset}, {condition}: validation mIoU by epoch (w = ensemble weights, initial → learned)"
        )
        fig.tight_layout()
        path = out / f"curves_{dataset}_{condition}.png"
        fig.savefig(path, dpi=70)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=REPO / "runs" / "models")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args()
    results = json.loads((args.out / "results.json").read_text())["runs"]
    for path in figures(args.models, args.out, args.preset) + curves(results, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
