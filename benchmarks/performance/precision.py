"""How much 16-bit inference changes what users get (issue #41): label agreement with float32,
the change in mIoU, and the relative error of the translation filters and translated images.

    python -m benchmarks.performance.precision                       # every set, light level, sample
    python -m benchmarks.performance.precision --sets nist-phase --conditions clean --images 2   # quick

Cases: held-out images of every labeled set (``benchmarks/paper/reproduce.py``: ``DATA``,
``CLASS_NAMES``, ``load_dataset`` with its light levels ``CONDITIONS``) at every light level, and
the three bundled sample tiles as shipped; each for two models:

- **bundled**: the bundled model. Held out for it: nist-phase's test tiles (every fifth,
  ``scripts/train_default.py``); the other sets it never saw;
- **strokes**: the bundled model fine-tuned (``cp.fine_tune``: the engine's fine-tuning rule and
  defaults, ``--epochs`` epochs) on ``--strokes`` simulated strokes (``benchmarks/harness/strokes.py``)
  painted on one training image of the set at the case's light level; that image is never scored.

Each image is predicted with every output (``predict``, tile 256, overlap 64, one torch thread) in
float32 and in each ``--precisions`` type under autocast on the same device. Per case: the share of
pixels whose label is the same as float32's, mIoU against the ground truth with float32 and the
16-bit change (only where the model's classes are the set's: the bundled model scores nist-phase
and the samples alone), and for the filters and translated images the relative error
‖x₁₆ − x₃₂‖₂ / ‖x₃₂‖₂ over the case's pixels and the largest error as a share of the map's display
range (the 0.5–99.5 percentiles napari's layers are shown with, ``_widgets/layers.robust_limits``).
``flips_uncertain`` is the share of changed labels where float32's top class probability is below
0.6. A precision meets the bar (``BAR``) when every case agrees on ≥ 99.9 % of its pixels and moves
mIoU by less than 0.001.

CUDA (float16, bfloat16) is measured when ``torch.cuda.is_available()``, with the same cases; on a
machine without it those rows are skipped with a note. On a CPU without native bfloat16
(``engine.devices.cpu_has_native_bfloat16``) the CPU rows measure the same rounding through emulated
kernels (exact products, float32 sums, outputs rounded to 16 bits, as AMX does), only far slower.
Writes ``--out``.json, and the table into its section of ``--out``.md (the page's prose is kept).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import datasets
from benchmarks.harness import report as reports
from benchmarks.harness.sections import write_section
from benchmarks.harness.strokes import add_strokes, paint
from napari_cellprep import api as cp
from napari_cellprep.engine.checkpoint import LoadedModel, load_default
from napari_cellprep.engine.devices import cpu_has_native_bfloat16
from napari_cellprep.engine.images.io import read_image, read_mask
from napari_cellprep.engine.images.metrics import confusion_matrix, scores
from napari_cellprep.engine.prediction.inference import OUTPUTS, Prediction, predict

SAMPLES = sorted((datasets.REPO / "src" / "napari_cellprep" / "samples").glob("*.tif"))
SETS = tuple(datasets.CLASS_NAMES)
BAR = {"agreement": 0.999, "miou_change": 0.001}
"""A 16-bit precision may become a default only where every case meets both (issue #41)."""
STROKE_IMAGE = {"nist-phase": 1, "isbi2012-membrane": 0, "vnc-em": 0}
"""The training image each set's fine-tuning strokes are painted on (never scored)."""
OUT = datasets.REPO / "docs" / "results" / "performance" / "precision"


def held_out(dataset: str, count: int) -> list[int]:
    """The first ``count`` images held out from both models: nist-phase's test tiles (every fifth,
    as ``scripts/train_default.py`` splits), for the others every image but the stroke image."""
    n = len(list((datasets.DATA / dataset / "masks").glob("*.png")))
    candidates = range(0, n, 5) if dataset == "nist-phase" else range(n)
    return [i for i in candidates if i != STROKE_IMAGE[dataset]][:count]


def sample_tiles() -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The bundled sample tiles as shipped, with their nist-phase masks."""
    masks = datasets.DATA / "nist-phase" / "masks"
    return [(read_image(path), read_mask(masks / f"{path.stem.removeprefix('nist_')}.png"), path.stem) for path in SAMPLES]


def relative_error(test: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(squared error, squared reference): the sums a pooled relative L2 error divides."""
    difference = test.astype(np.float64) - reference
    return float(np.sum(difference**2)), float(np.sum(reference.astype(np.float64) ** 2))


def range_error(test: np.ndarray, reference: np.ndarray) -> float:
    """The largest absolute error as a share of the reference's display range (per map: the last
    two axes, with the 0.5–99.5 percentiles as napari's layers are shown)."""
    worst = 0.0
    for ref, got in zip(reference.reshape(-1, *reference.shape[-2:]), test.reshape(-1, *test.shape[-2:])):
        low, high = np.percentile(ref, [0.5, 99.5])
        worst = max(worst, float(np.abs(got - ref).max() / max(high - low, 1e-12)))
    return worst


@dataclass
class Tally:
    """One case's sums over its images, for one 16-bit precision."""

    pixels: int = 0
    agree: int = 0
    flips_uncertain: int = 0
    confusion32: np.ndarray | None = None
    confusion16: np.ndarray | None = None
    squares: dict[str, list[float]] = field(default_factory=lambda: {"filters": [0.0, 0.0], "translated": [0.0, 0.0]})
    range_error: dict[str, float] = field(default_factory=lambda: {"filters": 0.0, "translated": 0.0})
    probability_error: float = 0.0
    seconds32: float = 0.0
    seconds16: float = 0.0

    def add(self, reference: Prediction, test: Prediction, mask: np.ndarray | None, num_classes: int) -> None:
        same = reference.labels == test.labels
        self.pixels += same.size
        self.agree += int(same.sum())
        top = reference.probabilities.max(axis=-3)
        self.flips_uncertain += int((~same & (top < 0.6)).sum())
        self.probability_error = max(
            self.probability_error, float(np.abs(test.probabilities - reference.probabilities).max())
        )
        if mask is not None:
            c32 = confusion_matrix(reference.labels, mask, num_classes)
            c16 = confusion_matrix(test.labels, mask, num_classes)
            self.confusion32 = c32 if self.confusion32 is None else self.confusion32 + c32
            self.confusion16 = c16 if self.confusion16 is None else self.confusion16 + c16
        for name in ("filters", "translated"):
            ref, got = getattr(reference, name), getattr(test, name)
            if ref is None:
                continue
            error, norm = relative_error(got, ref)
            self.squares[name][0] += error
            self.squares[name][1] += norm
            self.range_error[name] = max(self.range_error[name], range_error(got, ref))

    def row(self) -> dict:
        miou32 = miou16 = None
        if self.confusion32 is not None:
            miou32, miou16 = scores(self.confusion32).miou, scores(self.confusion16).miou
        changed = self.pixels - self.agree
        return {
            "pixels": self.pixels,
            "agreement": self.agree / self.pixels,
            "flips_uncertain": self.flips_uncertain / changed if changed else None,
            "miou_float32": miou32,
            "miou_change": None if miou32 is None else miou16 - miou32,
            "filters_relative_error": _ratio(self.squares["filters"]),
            "translated_relative_error": _ratio(self.squares["translated"]),
            "filters_range_error": self.range_error["filters"],
            "translated_range_error": self.range_error["translated"],
            "probability_max_error": self.probability_error,
            "time_ratio": self.seconds16 / self.seconds32 if self.seconds32 else None,
        }


def _ratio(sums: list[float]) -> float | None:
    return float(np.sqrt(sums[0] / sums[1])) if sums[1] else None


def meets_bar(row: dict) -> bool:
    change = row["miou_change"]
    return row["agreement"] >= BAR["agreement"] and (change is None or abs(change) < BAR["miou_change"])


def timed_predict(loaded: LoadedModel, image: np.ndarray, device: str, precision: str) -> tuple[Prediction, float]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    prediction = predict(loaded, image, outputs=(*OUTPUTS,), device=device, precision=precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return prediction, time.perf_counter() - start


def fine_tuned(
    base: LoadedModel, dataset: str, items: list[tuple[np.ndarray, np.ndarray, str]], args: argparse.Namespace
) -> LoadedModel:
    """The bundled model fine-tuned on strokes painted on the set's stroke image (of ``items``, the
    set at one light level)."""
    index = STROKE_IMAGE[dataset]
    image, mask, _ = items[index]
    strokes = add_strokes(mask, args.strokes, np.random.default_rng([args.seed, SETS.index(dataset), index]))
    result = cp.fine_tune(
        base, image, paint(strokes, mask.shape), labels_kind="painted", class_names=datasets.CLASS_NAMES[dataset],
        epochs=args.epochs, seed=args.seed, device="cpu",
    )
    return result.model


def measure_case(
    loaded: LoadedModel, images: list[tuple[np.ndarray, np.ndarray | None]], device: str, precisions: list[str]
) -> dict[str, dict]:
    """Rows for one model on one case's images: {precision: row}."""
    num_classes = loaded.info.config.num_classes
    tallies = {precision: Tally() for precision in precisions}
    for image, mask in images:
        reference, seconds = timed_predict(loaded, image, device, "float32")
        for precision, tally in tallies.items():
            test, seconds16 = timed_predict(loaded, image, device, precision)
            tally.seconds32 += seconds
            tally.seconds16 += seconds16
            tally.add(reference, test, mask, num_classes)
    return {precision: tally.row() for precision, tally in tallies.items()}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    provenance = {**reports.provenance(), "python": platform.python_version()}  # the code as the run starts
    base = load_default()
    devices = [("cpu", args.precisions)]
    notes = []
    if torch.cuda.is_available():
        devices.append(("cuda", args.cuda_precisions))
    else:
        notes.append("CUDA: not present on this machine (torch.cuda.is_available() is False): float16 and "
                     "bfloat16 on CUDA were not measured.")
    if not cpu_has_native_bfloat16():
        notes.append("This CPU has no native bfloat16 (no AMX, no AVX512-BF16): the CPU rows measure the 16-bit "
                     "rounding through emulated kernels, and their time ratios are those of the emulation.")
    rows = []
    plan: list[tuple[str, str, list[int]]] = [
        (dataset, condition, held_out(dataset, args.images[dataset])) for dataset in args.sets
        for condition in args.conditions
    ]
    if args.samples:
        plan.append(("samples", "clean", list(range(len(SAMPLES)))))
    tuned: dict[tuple[str, str], LoadedModel] = {}
    for dataset, condition, indices in plan:
        classes_of = "nist-phase" if dataset == "samples" else dataset
        items = datasets.load_dataset(classes_of, condition)
        if (classes_of, condition) not in tuned:
            tuned[classes_of, condition] = fine_tuned(base, classes_of, items, args)
            log(f"fine-tuned on {classes_of} {condition}")
        chosen = sample_tiles() if dataset == "samples" else [items[i] for i in indices]
        for model_name, loaded in (("bundled", base), ("strokes", tuned[classes_of, condition])):
            scored = loaded.info.class_names == datasets.CLASS_NAMES[classes_of]
            images = [(image, mask if scored else None) for image, mask, _ in chosen]
            for device, precisions in devices:
                start = time.perf_counter()
                for precision, row in measure_case(loaded, images, device, precisions).items():
                    row.update(set=dataset, condition=condition, model=model_name, device=device,
                               precision=precision, images=[name for _, _, name in chosen])
                    rows.append(row)
                    log(f"{dataset} {condition} {model_name} {device} {precision}: agreement "
                        f"{100 * row['agreement']:.3f}%, dmIoU {_fmt(row['miou_change'], '+.4f')}, "
                        f"filters {_fmt(row['filters_relative_error'], '.2e')} "
                        f"({time.perf_counter() - start:.0f} s)")
    verdicts = {}
    for device, precisions in devices:
        for precision in precisions:
            mine = [row for row in rows if row["device"] == device and row["precision"] == precision]
            failed = [row for row in mine if not meets_bar(row)]
            verdicts[f"{device} {precision}"] = {"cases": len(mine), "failed": len(failed), "meets_bar": not failed}
    return {
        "command": " ".join(["python -m benchmarks.performance.precision", *args.argv]),
        "date": datetime.date.today().isoformat(),
        "provenance": provenance,
        "native_cpu_bfloat16": cpu_has_native_bfloat16(),
        "threads": args.threads,
        "bar": BAR,
        "settings": {"tile": 256, "overlap": 64, "strokes": args.strokes, "epochs": args.epochs, "seed": args.seed},
        "notes": notes,
        "verdicts": verdicts,
        "rows": rows,
    }


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(record: dict) -> list[str]:
    """The Markdown report of a run."""
    p = record["provenance"]
    lines = [
        (
            f"Command: `{record['command']}` ({record['date']}, commit {p['commit'][:12]}; {p['cpu']}, "
            f"{p['cpu_id']}, {p['cpu_kernels']} kernels; native CPU bfloat16: {record['native_cpu_bfloat16']}; "
            f"torch {p['torch']}, {record['threads']} thread)."
        ),
        "",
        (
            f"Bar for a 16-bit default: every case agrees with float32 on ≥ {100 * BAR['agreement']:.1f} % of its "
            f"pixels and moves mIoU by less than {BAR['miou_change']}."
        ),
        "",
        "| precision | cases | below the bar | meets the bar |",
        "|---|---|---|---|",
    ]
    for name, verdict in record["verdicts"].items():
        lines.append(f"| {name} | {verdict['cases']} | {verdict['failed']} | {'yes' if verdict['meets_bar'] else 'no'} |")
    lines += [""] + [f"- {note}" for note in record["notes"]] + [""]
    lines += [
        (
            "| set | light | model | device | precision | pixels | label agreement | flips where float32 < 0.6 | "
            "mIoU float32 | ΔmIoU | filters rel. error | translated rel. error | filters max / range | "
            "translated max / range | max Δ probability | time 16-bit / float32 |"
        ),
        "|" + "---|" * 16,
    ]
    for r in record["rows"]:
        mark = "" if meets_bar(r) else " ✗"
        lines.append(
            f"| {r['set']} | {r['condition']} | {r['model']} | {r['device']} | {r['precision']} | {r['pixels']:,} | "
            f"{100 * r['agreement']:.3f} %{mark} | {_percent(r['flips_uncertain'])} | "
            f"{_fmt(r['miou_float32'], '.4f')} | {_fmt(r['miou_change'], '+.4f')} | "
            f"{_fmt(r['filters_relative_error'], '.1e')} | {_fmt(r['translated_relative_error'], '.1e')} | "
            f"{_fmt(r['filters_range_error'], '.3f')} | {_fmt(r['translated_range_error'], '.3f')} | "
            f"{r['probability_max_error']:.3f} | {_fmt(r['time_ratio'], '.2f')} |"
        )
    return lines


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--conditions", nargs="+", choices=list(datasets.CONDITIONS), default=list(datasets.CONDITIONS))
    parser.add_argument("--images", type=int, nargs=3, default=[10, 4, 2], metavar=("NIST", "ISBI", "VNC"),
                        help="held-out images per set (nist-phase 256², isbi2012-membrane 512², vnc-em 1024²)")
    parser.add_argument("--no-samples", dest="samples", action="store_false", help="skip the bundled sample tiles")
    parser.add_argument("--precisions", nargs="+", default=["bfloat16", "float16"], help="16-bit types on the CPU")
    parser.add_argument("--cuda-precisions", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--strokes", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (10 steps each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    args.images = dict(zip(SETS, args.images))
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    record = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    lines = report(record)
    write_section(args.out.with_suffix(".md"), "precision table", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
