"""Which pixel classifier gives the loop's first answer (issue #39 §1): accuracy and speed of the
candidates of ``napari_cellprep.engine.classifier`` against the loop benchmark's forest anchor.

For each set, condition (clean, low light, very low light) and image (the images, strokes and
vnc-em's central 512² crop of ``benchmarks/loop/scribbles.py``: 60 strokes, brush 3, length 30):

- **anchor**: ``scribbles.run_forest``, scikit-learn's 100-tree forest on scikit-image's
  ``multiscale_basic_features`` (its time includes those features);
- on our features (``pixel_features`` of the percentile-normalised image, 49 channels, timed
  apart: they are computed once per image and cached), fitted on the painted pixels and applied
  to the whole image:
  **forest** (``ForestClassifier``: 32 trees of depth ≤ 12, our torch traversal),
  **extra** (the same with extremely randomised trees), **rf100** (scikit-learn's 100-tree forest
  of unbounded depth and its own predict: the anchor's classifier on our features),
  **hgb** (scikit-learn's HistGradientBoosting, 100 iterations, its own predict),
  **mlp** (``MLPClassifier``: 16 hidden units, 100 full-batch Adam steps);
- **forest+net**, **mlp+net**: the same with the bundled network's maps appended (filters,
  translated images, branch probabilities: ``predict(..., outputs=("filters", "translated",
  "branches"))``; the network's time is not counted, as it would be cached).

mIoU is over the whole image against its full ground truth. Times are the median of
``--repeats`` fits and predictions with 2 torch threads and ``n_jobs=2``, and are also given as
ratios to the anchor's fit + predict timed in the same case (the machine is shared: absolute
times are noisy). The report gives per set × condition the mean mIoU and each candidate's paired
difference to the anchor over images (mean, 95% t interval; "not distinguishable" when it holds
0), and for the network's maps the paired difference with and without them.

    OMP_WAIT_POLICY=PASSIVE python -m benchmarks.loop.classifier_choice          # ~15 min idle
    OMP_WAIT_POLICY=PASSIVE python -m benchmarks.loop.classifier_choice --quick  # ~1 min

``OMP_WAIT_POLICY=PASSIVE`` keeps torch's idle OpenMP threads from spinning: on this busy 2-core
machine a 100-step perceptron fit took 0.5–1 s with it and 4–22 s without (measured here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import types
from functools import partial
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness.datasets import CONDITIONS, SETS, held_out
from benchmarks.harness.report import provenance
from benchmarks.harness.stats import paired_difference
from benchmarks.loop.scribbles import miou, painted_case, run_forest
from napari_cellprep.engine.checkpoint import load_default
from napari_cellprep.engine.classifier import (
    ForestClassifier,
    ForestSettings,
    MLPClassifier,
    MLPSettings,
    feature_names,
    painted_pixels,
    pixel_features,
    pixel_sample,
)
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.engine.prediction.inference import predict

OUT = Path(__file__).resolve().parents[2] / "docs" / "results" / "loop" / "classifier-choice"
THREADS = 2
CANDIDATES = ("forest", "extra", "rf100", "hgb", "mlp")
WITH_NET = ("forest+net", "mlp+net")
NORMALIZATION = Normalization("percentile")


class SklearnOnFeatures:
    """A scikit-learn classifier applied with its own ``predict_proba`` to a feature image."""

    def __init__(self, model, num_classes: int):
        self.model, self.num_classes = model, num_classes

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        f, h, w = features.shape
        proba = np.zeros((h * w, self.num_classes), np.float32)
        proba[:, self.model.classes_] = self.model.predict_proba(features.permute(1, 2, 0).reshape(-1, f).numpy())
        return torch.from_numpy(proba.T.reshape(self.num_classes, h, w))


def fit(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, names: list[str], reference: torch.Tensor):
    """The fitted candidate ``name`` (without its ``+net`` suffix)."""
    if name == "forest":
        return ForestClassifier.fit(x, y, num_classes, names, ForestSettings(extra=False, jobs=THREADS))
    if name == "extra":
        return ForestClassifier.fit(x, y, num_classes, names, ForestSettings(extra=True, jobs=THREADS))
    if name == "mlp":
        return MLPClassifier.fit(x, y, num_classes, names, MLPSettings(), reference=reference)
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    model = (RandomForestClassifier(n_estimators=100, n_jobs=THREADS, random_state=0) if name == "rf100"
             else HistGradientBoostingClassifier(max_iter=100, random_state=0))
    return SklearnOnFeatures(model.fit(x.numpy(), y.numpy()), num_classes)


def timed(run, repeats: int) -> tuple[object, float]:
    """(the last result, the median seconds) of ``repeats`` calls of ``run``."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return result, float(np.median(seconds))


def network_maps(base, image: np.ndarray) -> torch.Tensor:
    """The bundled network's filters, translated images and branch probabilities, (K, H, W)."""
    p = predict(base, image, outputs=("filters", "translated", "branches"))
    h, w = p.labels.shape
    maps = [m.reshape(-1, h, w) for m in (p.filters, p.translated, p.branch_probabilities) if m is not None]
    return torch.from_numpy(np.concatenate(maps).astype(np.float32))


def run_case(dataset: str, condition: str, index: int, args, base) -> dict:
    strokes_args = types.SimpleNamespace(seed=0, strokes=60, brush=3, length=30)
    image, mask, name, class_names, _, labels = painted_case(dataset, condition, index, strokes_args)
    c = len(class_names)
    out = {"image": name, "index": index, "shape": list(mask.shape), "painted_pixels": int((labels > 0).sum()), "loadavg": os.getloadavg()}
    anchors = [run_forest(image, labels, mask, c) for _ in range(args.repeats)]
    out["anchor"] = {**anchors[-1], **{k: float(np.median([a[k] for a in anchors]))
                                       for k in ("seconds", "features_s", "fit_s", "predict_s")}}
    normalised = NORMALIZATION.apply(image)
    features, out["features_s"] = timed(lambda: pixel_features(normalised), args.repeats)
    names = feature_names(1)
    sets = {"": (features, names)}
    if not args.no_net:
        maps = network_maps(base, image)
        sets["+net"] = (torch.cat([features, maps]), names + [f"net{k}" for k in range(len(maps))])
    anchor_time = out["anchor"]["fit_s"] + out["anchor"]["predict_s"]
    for name_ in args.candidates + (list(WITH_NET) if not args.no_net else []):
        kind, suffix = (name_.split("+")[0], "+net") if "+" in name_ else (name_, "")
        feats, feat_names = sets[suffix]
        x, y = painted_pixels(feats, labels)
        reference = pixel_sample(feats)
        repeats = 1 if suffix else args.repeats
        model, fit_s = timed(partial(fit, kind, x, y, c, feat_names, reference), repeats)
        proba, predict_s = timed(partial(model.predict_proba, feats), repeats)
        out[name_] = {"fit_s": fit_s, "predict_s": predict_s, "ratio_to_anchor": (fit_s + predict_s) / anchor_time,
                      **miou(proba.argmax(0).numpy(), mask, c)}
    return out


def case_keys(results: dict):
    for key, case in results["cases"].items():
        dataset, condition, index = key.split("/")
        yield dataset, condition, int(index), case


def report(results: dict) -> list[str]:
    """The markdown report."""
    methods = ["anchor", *results["candidates"]]
    lines = ["# Pixel classifier choice (issue #39 §1)", "",
             (f"`{results['command']}` — {results['machine']}, torch {results['torch']}, {THREADS} threads, "
              f"OMP_WAIT_POLICY={results['omp_wait_policy']}; git {results['git_head']}."), "",
             ("mIoU over the whole image (60 strokes); differences are candidate − anchor in points of mIoU (×100), "
              "paired over images, with their 95% t interval."), ""]
    groups: dict[tuple[str, str], list[dict]] = {}
    for dataset, condition, _, case in case_keys(results):
        groups.setdefault((dataset, condition), []).append(case)
    lines += ["| set | condition | n | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    for (dataset, condition), cases in groups.items():
        cells = [f"{np.mean([c[m]['miou'] for c in cases]):.3f}" for m in methods]
        lines.append(f"| {dataset} | {condition} | {len(cases)} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences to the anchor", "",
              "| set | condition | " + " | ".join(results["candidates"]) + " |",
              "|---|---|" + "---|" * len(results["candidates"])]
    for (dataset, condition), cases in groups.items():
        lines.append(f"| {dataset} | {condition} | " + " | ".join(
            _difference(cases, m, "anchor") for m in results["candidates"]) + " |")
    every = [case for cases in groups.values() for case in cases]
    lines.append("| all | all (cases not independent) | " + " | ".join(
        _difference(every, m, "anchor") for m in results["candidates"]) + " |")
    lines += ["", "## Candidates against each other (all cases)", ""]
    pairs = [("mlp", "forest"), ("extra", "forest"), ("rf100", "forest"), ("hgb", "forest"),
             ("forest+net", "forest"), ("mlp+net", "mlp")]
    for a, b in pairs:
        if a in results["candidates"] and b in results["candidates"]:
            per_set = "; ".join(f"{d}: {_difference([c for (d2, _), cs in groups.items() if d2 == d for c in cs], a, b)}"
                                for d in dict.fromkeys(d for d, _ in groups))
            lines.append(f"- {a} − {b}: all {_difference(every, a, b)}; {per_set}")
    lines += ["", ("## Times (median of repeats, seconds; ratio = (fit + predict) / the anchor's fit + predict "
                   "in the same case)"), "", "| method | features | fit | predict | fit + predict | ratio |",
              "|---|---|---|---|---|---|"]
    timed_cases = [c for c in every if c["shape"] == [512, 512]] or every
    a = [c["anchor"] for c in timed_cases]
    lines.append(f"| anchor (mbf + RF 100, sklearn) | {np.median([x['features_s'] for x in a]):.3f} | "
                 f"{np.median([x['fit_s'] for x in a]):.3f} | {np.median([x['predict_s'] for x in a]):.3f} | "
                 f"{np.median([x['fit_s'] + x['predict_s'] for x in a]):.3f} | 1 |")
    for m in results["candidates"]:
        r = [c[m] for c in timed_cases]
        lines.append(f"| {m} | {np.median([c['features_s'] for c in timed_cases]):.3f} | {np.median([x['fit_s'] for x in r]):.3f} | "
                     f"{np.median([x['predict_s'] for x in r]):.3f} | "
                     f"{np.median([x['fit_s'] + x['predict_s'] for x in r]):.3f} | "
                     f"{np.median([x['ratio_to_anchor'] for x in r]):.2f} |")
    lines += ["", (f"Medians over the {len(timed_cases)} cases of 512² (ISBI 2012, vnc-em crops; all cases when "
                   "none); `features` are ours (the anchor's row: scikit-image's); `+net` candidates are timed once "
                   "and without the network's own prediction.")]
    return lines


def _difference(cases: list[dict], a: str, b: str) -> str:
    d = paired_difference({k: c[a]["miou"] for k, c in enumerate(cases)}, {k: c[b]["miou"] for k, c in enumerate(cases)})
    if d is None:
        return "–"
    mean, low, high, _ = d
    verdict = " not distinguishable" if low <= 0 <= high else ""
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]{verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one image of nist-phase and ISBI, clean, one repeat")
    parser.add_argument("--images", type=int, default=3, help="images per set (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timings repeated (median; default 3)")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--no-net", action="store_true", help="skip the candidates with the network's maps")
    parser.add_argument("--out", type=Path, default=OUT, help="output path without suffix")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args(argv)
    if args.report_only:
        write_report(json.loads(args.out.with_suffix(".json").read_text()), args.out)
        return 0
    if args.quick:
        args.images, args.repeats, args.conditions = 1, 1, ["clean"]
        args.sets = ["nist-phase", "isbi2012-membrane"]
        args.out = args.out.with_name(args.out.name + "-quick")
    torch.set_num_threads(THREADS)
    made_with = provenance()
    candidates = args.candidates + ([] if args.no_net else list(WITH_NET))
    command = " ".join(["python -m benchmarks.loop.classifier_choice", *(sys.argv[1:] if argv is None else argv)])
    results = {"command": command.strip(),
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "torch": torch.__version__,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "git_head": made_with["commit"][:12],
               "provenance": made_with,
               "candidates": candidates, "cases": {}}
    base = None if args.no_net else load_default()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.sets:
        for index in held_out(dataset)[: args.images]:
            for condition in args.conditions:
                case = run_case(dataset, condition, index, args, base)
                results["cases"][f"{dataset}/{condition}/{index}"] = case
                print(f"{dataset} {condition} {case['image']}: anchor {case['anchor']['miou']:.3f} "
                      + " ".join(f"{m} {case[m]['miou']:.3f} ({case[m]['fit_s'] + case[m]['predict_s']:.2f} s)"
                                 for m in candidates)
                      + f"; anchor fit+predict {case['anchor']['fit_s'] + case['anchor']['predict_s']:.2f} s, "
                        f"features {case['features_s']:.2f} s", flush=True)
                args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    write_report(results, args.out)
    return 0


def write_report(results: dict, out: Path) -> None:
    text = "\n".join(report(results)) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
