"""The interactive-loop benchmark (issue #9 §1): a simulated annotator paints short brush strokes
on held-out images; ours (the Train dock's code path) against a random forest on multiscale
filter features (what ilastik and APOC do) and, when installed, napari-convpaint.

For each set, condition (clean and the two low-light levels of ``benchmarks/paper/reproduce.py``) and
image (vnc-em: the central 512² crop):

- **strokes**: ``--strokes`` (60) strokes, balanced over the classes, ``--brush`` (3) px wide and
  about ``--length`` (30) px long, each inside one class region (``scribble_sim``); the same
  strokes under every condition of an image;
- **forest**: scikit-learn ``RandomForestClassifier`` (100 trees, ``n_jobs=2``) on scikit-image's
  ``multiscale_basic_features`` (intensity, edges, texture; sigmas 1–16) of the stroke pixels;
  its time is features + fit + prediction of the whole image;
- **convpaint**: ``ConvpaintModel(alias="gaussian")`` train + segment (optional: skipped with a
  note when ``napari_convpaint`` does not import);
- **ours**: the Train dock's job (``engine.training.live.training_job``: ``painted_items``,
  ``split_validation``, the dock's form defaults, the dock's torch threads, the live preview on the
  whole image) fine-tuning the bundled model (``finetune``) or a new model (``scratch``). The
  clock starts when Train is pressed (data preparation included) and counts only time spent in
  the job (scoring between events is excluded). At each budget the score is that of the last
  preview the user had seen by then (``preview``); the current weights are also scored, once,
  right after the budget (``last``, a diagnosis only). ``first_preview`` is when the first preview
  appeared;
- **rounds** (``--parts rounds``): fine-tune ``--round-seconds`` on the strokes, then 5 times add
  ``--round-strokes`` strokes (a) at random, (b) at the maxima of the branch disagreement of the
  current model's prediction (the engine's ``Prediction.disagreement``), (c) at the maxima of its
  errors (oracle), (s) drawn in proportion to the disagreement (an annotator following the
  disagreement layer), (q) drawn so inside the squares of ``engine.uncertainty.uncertain_regions``
  (the "paint here next" cue before it knew the strokes), or (p) the same with the disagreement
  near the strokes already painted discounted (``engine.uncertainty.coverage_discount``: the
  Segment dock's cue now), and fine-tune again for ``--round-seconds`` from the previous round's
  model; the forest is refitted on the same strokes each round.

mIoU is over the whole image against its full ground truth. Results go to ``--out``.json
after every case (re-running skips cases already there), then ``--out``.md and ``--out``.png.

Needs the ``benchmarks`` extra (scikit-learn for the forest): ``pip install -e ".[benchmarks]"``.

Quick check (a few minutes)::

    python -m benchmarks.loop.scribbles --sets nist-phase --conditions clean --images 1 --budgets 5 15 30

napari-convpaint's own requirements would replace torch 2.13.0 with a CUDA build, so install it
aside: ``pip install --no-deps --target /tmp/convpaint-site napari-convpaint==1.2.0
napari-guitils einops catboost`` and run with ``PYTHONPATH=/tmp/convpaint-site``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import platform
import shlex
import sys
import threading
import time
import types
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]

from benchmarks.harness import datasets
from benchmarks.harness.datasets import SETS, held_out, load_case
from benchmarks.harness.strokes import add_strokes, paint  # noqa: E402
from napari_cellprep.engine.checkpoint import (  # noqa: E402
    LoadedModel,
    ModelInfo,
    default_checkpoint_path,
    load_checkpoint,
    load_default,
)
from napari_cellprep.engine.events import EpochEnd, StepEnd  # noqa: E402
from napari_cellprep.engine.images.metrics import confusion_matrix, scores  # noqa: E402
from napari_cellprep.engine.prediction.inference import predict  # noqa: E402
from napari_cellprep.engine.prediction.uncertainty import coverage_discount, uncertain_regions  # noqa: E402
from napari_cellprep.engine.threads import gui_torch_threads, warm_up_optimizer  # noqa: E402
from napari_cellprep.engine.training.data import split_validation  # noqa: E402
from napari_cellprep.engine.training.live import PreviewReady, painted_items, training_job  # noqa: E402
from napari_cellprep.engine.training.loop import TrainConfig  # noqa: E402
from napari_cellprep.engine.training.plan import default_val_fraction, training_settings  # noqa: E402
from napari_cellprep.engine.training.recipe import RunPlan  # noqa: E402
from napari_cellprep.model import ModelConfig  # noqa: E402

BUDGETS = (5.0, 15.0, 30.0, 60.0, 120.0)
STRATEGIES = {"a": "random", "b": "branch disagreement", "c": "errors (oracle)",
              "s": "sampled by branch disagreement", "q": "in the cue's squares",
              "p": "in the cue's squares, away from the strokes (the dock's cue)"}

def _dock(fine_tune: bool, continuing: bool = False) -> dict:
    """The Train dock's settings for a start mode, read from the engine (``training_settings``,
    ``default_val_fraction``): epochs, lr, batch, patch, steps per epoch, device, validation share of
    the painted pixels (0: none), BatchNorm handling, seed (weights, patches and the validation
    split, as the dock uses it); a new model is width 16, depth 4."""
    t = training_settings(fine_tune, continuing=continuing)
    return dict(epochs=t.epochs, learning_rate=t.learning_rate, batch_size=t.batch_size, patch_size=t.patch_size,
                steps_per_epoch=t.steps_per_epoch, device="auto", val_fraction=default_val_fraction(fine_tune),
                width=16, depth=4, freeze_norm=int(t.freeze_norm), adapt_norm=int(t.adapt_norm),
                refresh_norm=int(t.refresh_norm), fresh_learning_rate=t.fresh_learning_rate, fit_heads=int(t.fit_heads), fit_copied_heads=int(t.fit_copied_heads), cpu_bfloat16=int(t.cpu_bfloat16), average_weights=t.average_weights, select_on_strokes=int(t.select_on_strokes),
                seed=t.seed)


DOCK = _dock(True)
"""The dock's fine-tuning settings (``scratch`` runs start from ``_dock(False)``). Before commit
1036fba the dock fine-tuned with the from-scratch settings (lr 1e-3, 256² patches, about one pass,
20% held out): docs/results/archive/scribbles-v1.md. ``threads`` None: as the dock sets them
(``gui_torch_threads``)."""
CONTINUING = {key: value for key, value in _dock(True, continuing=True).items() if DOCK[key] != value}
"""What the dock changes when it fine-tunes a model it fine-tuned before (Train again after
correcting; ``engine.plan.CONTINUE_DEFAULTS``): the rounds after the first train with it, then
with ``--later-set``. Rounds measured before it existed (commit 195f634 and earlier) record
``later_rounds`` without it."""
SETTINGS = dict(DOCK, threads=None)
OVERRIDES: dict = {}
"""What fine-tuning runs train with: ``DOCK`` with the ``--set KEY=VALUE`` overrides (``OVERRIDES``, a
variant, ``--tag``); scratch runs apply the same overrides to ``_dock(False)``."""
LATER_ROUNDS: dict = {}
"""``--later-set KEY=VALUE``: settings of the rounds after the first only (a variant, ``--tag``): the
dock continuing from a model it already fine-tuned on this image."""
RETIRED = {"denoise_head": 0, "self_supervised_weight": 0.0, "self_supervised_share": 0.5}
"""Settings that runs made before the denoise head and its Noise2Void loss left the product record,
at the values that meant off: not a change from the dock's settings."""
FLOAT_SETTINGS = ("learning_rate", "val_fraction", "fresh_learning_rate", "average_weights")
"""``--set`` values read as floats (``device`` as text, the others as integers)."""


def override(key: str, value: str, into: dict | None = None) -> None:
    """``--set key=value``: change a setting of ``SETTINGS`` for every run (``ValueError`` if
    unknown); ``into`` (``LATER_ROUNDS``, ``--later-set``): record it there instead."""
    if key not in SETTINGS:
        raise ValueError(f"unknown setting {key!r}; choose from {list(SETTINGS)}")
    if key == "device":
        parsed = value
    elif value.lower() in ("none", "auto"):
        parsed = None
    else:
        parsed = float(value) if key in FLOAT_SETTINGS else int(value)
    if into is not None:
        into[key] = parsed
        return
    SETTINGS[key] = parsed
    OVERRIDES[key] = parsed


def threads() -> int:
    return SETTINGS["threads"] or gui_torch_threads()


# -- data -------------------------------------------------------------------------------------
def miou(labels: np.ndarray, mask: np.ndarray, num_classes: int) -> dict:
    s = scores(confusion_matrix(np.asarray(labels), mask, num_classes))
    return {"miou": float(s.miou), "iou": [float(v) for v in s.iou]}


# -- anchors ----------------------------------------------------------------------------------
def run_forest(image: np.ndarray, labels: np.ndarray, mask: np.ndarray, num_classes: int) -> dict:
    """Random forest on multiscale_basic_features, trained on the painted pixels."""
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    start = time.perf_counter()
    x = image.astype(np.float32)
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
    features = multiscale_basic_features(x, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16)
    t_features = time.perf_counter()
    painted = labels > 0
    forest = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0)
    forest.fit(features[painted], labels[painted] - 1)
    t_fit = time.perf_counter()
    pred = forest.predict(features.reshape(-1, features.shape[-1])).reshape(mask.shape)
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "features_s": t_features - start,
        "fit_s": t_fit - t_features,
        "predict_s": end - t_fit,
        **miou(pred, mask, num_classes),
    }


_CONVPAINT: object = None


def convpaint_class():
    """``ConvpaintModel``, or a string saying why it is not available."""
    global _CONVPAINT
    if _CONVPAINT is not None:
        return _CONVPAINT
    try:
        spec = importlib.util.find_spec("napari_convpaint")
        if spec is None:
            raise ImportError("napari_convpaint is not installed")
        if importlib.util.find_spec("timm") is None:
            # Its feature_extractors/__init__ imports every extractor (timm, torchvision for the CNN
            # and DINO ones); skipping that __init__ leaves the offline gaussian extractor usable.
            package = types.ModuleType("napari_convpaint.feature_extractors")
            package.__path__ = [str(Path(spec.origin).parent / "feature_extractors")]
            sys.modules["napari_convpaint.feature_extractors"] = package
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import napari_convpaint
            from napari_convpaint.convpaint_model import ConvpaintModel

        _CONVPAINT = (ConvpaintModel, getattr(napari_convpaint, "__version__", "?"))
    except Exception as exc:  # any failure: the benchmark runs without it
        _CONVPAINT = f"napari-convpaint not available: {type(exc).__name__}: {exc}"
    return _CONVPAINT


def run_convpaint(image: np.ndarray, labels: np.ndarray, mask: np.ndarray, num_classes: int) -> dict:
    found = convpaint_class()
    if isinstance(found, str):
        return {"skipped": found}
    model_class, version = found
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        model = model_class(alias="gaussian")
        start = time.perf_counter()
        model.train(image.astype(np.float32), labels)
        pred = np.asarray(model.segment(image.astype(np.float32)))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "version": version, "classifier": str(model.get_param("classifier")),
            **miou(pred.astype(np.int64) - 1, mask, num_classes)}


# -- ours -------------------------------------------------------------------------------------
def model_info(kind: str, base: LoadedModel, class_names: list[str]) -> tuple[ModelInfo, LoadedModel | None]:
    """What the dock trains: the bundled model's description (fine-tune) or a new width-16 model.

    The dock keeps the base model's classes; for a set with another class count (vnc-em: 3) the
    engine's fine-tuning rule (fresh heads and ensemble) is used, as ``cellprep train --init`` does."""
    num_classes = len(class_names)
    if kind == "scratch":
        config = ModelConfig(num_classes=num_classes, in_channels=1, width=SETTINGS["width"], depth=SETTINGS["depth"])
        return ModelInfo(config, list(class_names), name="new model"), None
    info = base.info
    if info.config.num_classes == num_classes:
        return ModelInfo(info.config, list(info.class_names), info.normalization, list(info.class_colors),
                         name="fine-tuned"), base
    config = replace(info.config, num_classes=num_classes)
    return ModelInfo(config, list(class_names), info.normalization, name="fine-tuned"), base


def _inner_model(job) -> torch.nn.Module | None:
    """The model ``train_iter`` is training right now (for the ``last`` diagnosis score), read from
    the running generators' frames; None if the engine's structure changed."""
    try:
        gen = job
        while gen is not None:
            frame = gen.gi_frame
            if frame is not None and "model" in frame.f_locals and isinstance(frame.f_locals["model"], torch.nn.Module):
                return frame.f_locals["model"]
            inner = gen.gi_yieldfrom
            if inner is None and frame is not None:
                inner = frame.f_locals.get("events")
            gen = inner
    except Exception:
        return None
    return None


def train_run(image, labels, mask, info, init, *, seconds: float, budgets=(), preview=True,
              epochs: int | None = None, last_weights: bool = False, extra: dict | None = None) -> dict:
    """One press of Train with the dock's settings (and ``extra`` on top), stopped once ``seconds``
    of the dock's clock have passed (or at the dock's epoch count). Returns timings, the previews'
    scores, the ``last`` scores right after each budget and the returned (best) model; with
    ``last_weights`` also ``last_model``, the weights after the last step (in eval mode; a
    diagnosis)."""
    num_classes = info.config.num_classes
    stop = threading.Event()
    clock = 0.0
    start = time.perf_counter()
    items = painted_items(image, labels, rgb=False, in_channels=info.config.in_channels,
                          normalization=info.normalization, class_names=info.class_names)
    settings = {**(SETTINGS if init is not None else {**_dock(False), **OVERRIDES}), **(extra or {})}
    if settings["val_fraction"]:
        train, val = split_validation(items, settings["val_fraction"], settings["seed"])
    else:  # the dock's validation "none": every epoch counts as best, so each one is previewed
        train, val = items, None
    config = TrainConfig(epochs=epochs or settings["epochs"], batch_size=settings["batch_size"],
                         learning_rate=settings["learning_rate"], patch_size=settings["patch_size"],
                         steps_per_epoch=settings["steps_per_epoch"], device=settings["device"],
                         freeze_norm=bool(settings["freeze_norm"]), adapt_norm=bool(settings["adapt_norm"]),
                         refresh_norm=bool(settings.get("refresh_norm")),
                         fresh_learning_rate=settings.get("fresh_learning_rate"),
                         fit_heads=bool(settings.get("fit_heads")),
                         fit_copied_heads=bool(settings.get("fit_copied_heads")),
                         cpu_bfloat16=bool(settings.get("cpu_bfloat16")),
                         average_weights=settings.get("average_weights") or 0.0,
                         select_on_strokes=bool(settings.get("select_on_strokes")), seed=settings["seed"])
    plan = RunPlan(info, config, tuple(train), tuple(val) if val else None, init)  # as the dock's, unchecked
    job = training_job(plan, stop=stop, preview=image if preview else None, threads=threads())
    clock += time.perf_counter() - start
    previews, epochs_log, step_times, last = [], [], [], {}
    pending = sorted(b for b in budgets if b <= seconds)
    steps, steps_per_epoch, result, trained = 0, None, None, None
    while True:
        t0 = time.perf_counter()
        try:
            event = next(job)
        except StopIteration as end:
            clock += time.perf_counter() - t0
            result = end.value
            break
        elapsed = time.perf_counter() - t0
        clock += elapsed
        if isinstance(event, StepEnd):
            steps += 1
            steps_per_epoch = event.steps_per_epoch
            step_times.append(elapsed)
            if last_weights and trained is None:
                trained = _inner_model(job)  # trained in place: after the last step, the last weights
        elif isinstance(event, EpochEnd):
            epochs_log.append({"t": clock, "epoch": event.epoch, "val_miou": event.val_miou,
                               "improved": bool(event.improved), "steps": steps, "epoch_end_s": elapsed})
        elif isinstance(event, PreviewReady):
            previews.append({"t": clock, "epoch": event.epoch, "predict_s": elapsed,
                             **miou(event.labels, mask, num_classes)})
        while pending and clock >= pending[0]:
            budget = pending.pop(0)
            model = _inner_model(job)
            entry = {"t": clock, "steps": steps, "epochs": len(epochs_log)}
            if model is not None:
                entry.update(miou(predict(LoadedModel(model, info), image, outputs=()).labels, mask, num_classes))
            last[str(budget)] = entry
        if clock >= seconds:
            stop.set()
    ended = "budget" if stop.is_set() else "epochs"
    for budget in pending:  # training ended (all epochs) before these budgets: the final model
        last[str(budget)] = {"t": clock, "steps": steps, "epochs": len(epochs_log), "final": True,
                             **miou(predict(result.model, image, outputs=()).labels, mask, num_classes)}
    at_budget = {}
    for budget in budgets:
        seen = [p for p in previews if p["t"] <= budget]
        at_budget[str(budget)] = None if not seen else {k: seen[-1][k] for k in ("t", "epoch", "miou", "iou")}
    return {
        "clock_s": clock,
        "ended": ended,
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "epochs_run": len(epochs_log),
        "s_per_step_median": float(np.median(step_times)) if step_times else None,
        "first_step_s": step_times[0] if step_times else None,
        "first_preview": previews[0]["t"] if previews else None,
        "preview": at_budget,
        "last": last,
        "previews": previews,
        "epochs": epochs_log,
        "torch_threads": threads(),
        "train_pixels": int(sum(item.labeled_pixels for item in train)),
        "val_pixels": int(sum(item.labeled_pixels for item in val or [])),
        "model": result.model,
        **({"last_model": LoadedModel(trained.eval(), info)} if last_weights else {}),
    }


# -- runner -----------------------------------------------------------------------------------
def case_strokes(dataset: str, index: int, mask: np.ndarray, args) -> list:
    rng = np.random.default_rng([args.seed, SETS.index(dataset), index])
    return add_strokes(mask, args.strokes, rng, brush=args.brush, length=args.length)


def stroke_stats(labels: np.ndarray, num_classes: int) -> dict:
    return {"painted_pixels": [int((labels == k + 1).sum()) for k in range(num_classes)],
            "painted_fraction": float((labels > 0).mean())}


def painted_case(dataset, condition, index, args):
    """(image, mask, name, class names, strokes, painted labels) of one case."""
    image, mask, name = load_case(dataset, condition, index)
    strokes = case_strokes(dataset, index, mask, args)
    return image, mask, name, datasets.CLASS_NAMES[dataset], strokes, paint(strokes, mask.shape)


def budget_case(dataset, condition, index, args, base) -> dict:
    image, mask, name, names, strokes, labels = painted_case(dataset, condition, index, args)
    num_classes = len(names)
    out = {"image": name, "index": index, "shape": list(mask.shape), "strokes": len(strokes), "settings": dict(SETTINGS),
           **stroke_stats(labels, num_classes), "loadavg_start": os.getloadavg()}
    if "forest" in args.methods:
        out["forest"] = run_forest(image, labels, mask, num_classes)
        log(f"  forest {out['forest']['seconds']:.1f} s mIoU {out['forest']['miou']:.3f}")
    if "convpaint" in args.methods:
        out["convpaint"] = run_convpaint(image, labels, mask, num_classes)
        c = out["convpaint"]
        log("  convpaint " + (c.get("skipped") or f"{c['seconds']:.1f} s mIoU {c['miou']:.3f}"))
    if base.info.config.num_classes == num_classes:
        out["bundled"] = miou(predict(base, image, outputs=()).labels, mask, num_classes)
    for kind in ("finetune", "scratch"):
        if kind not in args.methods:
            continue
        info, init = model_info(kind, base, names)
        run = train_run(image, labels, mask, info, init, seconds=max(args.budgets), budgets=args.budgets,
                        epochs=args.epochs)
        run.pop("model")
        out[kind] = run
        summary = " ".join(f"{b:g}s:" + ("-" if v is None else f"{v['miou']:.3f}") for b, v in
                           zip(args.budgets, run["preview"].values()))
        log(f"  {kind}: first preview {run['first_preview']}, {run['steps']} steps, "
            f"{run['s_per_step_median']:.2f} s/step; {summary}")
    out["loadavg_end"] = os.getloadavg()
    return out


def rounds_case(dataset, condition, index, args, base) -> dict:
    image, mask, name, names, strokes, labels0 = painted_case(dataset, condition, index, args)
    num_classes = len(names)
    info, init = model_info("finetune", base, names)
    out = {"image": name, "index": index, "round_seconds": args.round_seconds, "settings": dict(SETTINGS),
           "later_rounds": {**CONTINUING, **LATER_ROUNDS},
           "round_strokes": args.round_strokes, "loadavg_start": os.getloadavg(), "strategies": {}}
    first = train_run(image, labels0, mask, info, init, seconds=args.round_seconds, preview=False)
    model0 = first.pop("model")
    pred0 = predict(model0, image, outputs=("branches",))
    round0 = {"round": 0, **stroke_stats(labels0, num_classes), "steps": first["steps"],
              **miou(pred0.labels, mask, num_classes),
              "forest": run_forest(image, labels0, mask, num_classes)["miou"]}
    log(f"  round 0: mIoU {round0['miou']:.3f} (forest {round0['forest']:.3f})")
    for key in args.strategies:
        rng = np.random.default_rng([args.seed, SETS.index(dataset), index, ord(key)])
        model, labels, pred, history = model0, labels0, pred0, [round0]
        for r in range(1, args.rounds + 1):
            score, within = None, None
            if key in ("b", "s", "q"):
                score = pred.disagreement
            elif key == "p":
                score = pred.disagreement * coverage_discount(labels)
            elif key == "c":
                score = (pred.labels != mask).astype(np.float32)
            if key in ("q", "p"):
                within = np.zeros(mask.shape, dtype=bool)
                for square in uncertain_regions(pred.disagreement, painted=labels if key == "p" else None):
                    within[square.top : square.bottom, square.left : square.right] = True
            new = add_strokes(mask, args.round_strokes, rng, brush=args.brush, length=args.length,
                              painted=labels, score=score, sample=key in ("s", "q", "p"), within=within)
            chosen_disagreement = None if pred.disagreement is None else float(
                np.mean([pred.disagreement[s.rows, s.cols].mean() for s in new]))
            chosen_error = float(np.mean([(pred.labels[s.rows, s.cols] != s.cls).mean() for s in new]))
            labels = paint(new, mask.shape, labels)
            run = train_run(image, labels, mask, info, model, seconds=args.round_seconds, preview=False,
                            extra={**CONTINUING, **LATER_ROUNDS})
            model = run.pop("model")
            pred = predict(model, image, outputs=("branches",))
            history.append({"round": r, **stroke_stats(labels, num_classes), "steps": run["steps"],
                            "new_strokes_disagreement": chosen_disagreement,
                            "new_strokes_error_rate": chosen_error,
                            **miou(pred.labels, mask, num_classes),
                            "forest": run_forest(image, labels, mask, num_classes)["miou"]})
        out["strategies"][key] = history
        ours = " ".join(f"{h['miou']:.3f}" for h in history)
        forest = " ".join(f"{h['forest']:.3f}" for h in history)
        log(f"  ({key}) {ours}; forest {forest}")
    out["loadavg_end"] = os.getloadavg()
    return out


def _git_head() -> str:
    try:
        import subprocess

        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "?"


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def save_json(results: dict, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=float))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--conditions", nargs="+", default=list(datasets.CONDITIONS), choices=list(datasets.CONDITIONS))
    parser.add_argument("--images", type=int, default=3, help="images per set (default 3)")
    parser.add_argument("--first-image", type=int, default=0, help="skip this many of each set's images")
    parser.add_argument("--parts", nargs="+", default=["budgets"], choices=["budgets", "rounds"])
    parser.add_argument("--methods", nargs="+", default=["forest", "convpaint", "finetune", "scratch"],
                        choices=["forest", "convpaint", "finetune", "scratch"])
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS), help="seconds")
    parser.add_argument("--epochs", type=int, default=None, help=f"override the dock's {DOCK['epochs']} epochs")
    parser.add_argument("--strokes", type=int, default=60, help="strokes of round 0 (all classes)")
    parser.add_argument("--brush", type=int, default=3, help="brush width, px")
    parser.add_argument("--length", type=int, default=30, help="stroke length, px")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-strokes", type=int, default=10, help="strokes added per round")
    parser.add_argument("--round-seconds", type=float, default=20.0, help="training clock per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=str(REPO / "docs" / "results" / "scribbles"), help="writes OUT.json/.md/.png"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md and .png from the .json")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help=f"a variant: change a training setting of the dock ({', '.join(SETTINGS)}); needs --tag")
    parser.add_argument("--later-set", action="append", default=[], metavar="KEY=VALUE", dest="later",
                        help="a variant: change a setting in the rounds after the first only; needs --tag")
    parser.add_argument("--start", type=Path, default=None, metavar="FILE.cellprep",
                        help="fine-tune this checkpoint instead of the bundled model (a variant: name it with --tag)")
    parser.add_argument("--tag", default="", help="name of the variant (cases are stored apart as PART+TAG)")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's notes (kept in the .json)")
    args = parser.parse_args(argv)
    args.budgets = sorted(args.budgets)
    for item in args.overrides:
        key, _, value = item.partition("=")
        try:
            override(key, value)
        except ValueError as exc:
            parser.error(f"--set {item}: {exc}")
    for item in args.later:
        key, _, value = item.partition("=")
        try:
            override(key, value, into=LATER_ROUNDS)
        except ValueError as exc:
            parser.error(f"--later-set {item}: {exc}")
    if (args.overrides or args.later or args.start) and not args.tag:
        parser.error("--set, --later-set and --start make a variant: name it with --tag")
    start_path = args.start or default_checkpoint_path()

    out = Path(args.out)
    json_path = out.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.exists() else {"commands": [], "cases": {}}
    results.setdefault("notes", []).extend(n for n in args.note if n not in results["notes"])
    if args.note and args.report_only and json_path.exists():
        save_json(results, json_path)
    if not args.report_only:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO), *(argv or sys.argv[1:])])
        pythonpath = os.environ.get("PYTHONPATH")
        results["commands"].append({
            "command": (f"PYTHONPATH={pythonpath} " if pythonpath else "") + command,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
                       f"{torch.__version__} ({torch.get_num_threads()} threads by default; the dock trains on "
                       f"{gui_torch_threads()})",
            "loadavg": os.getloadavg(),
            "convpaint": convpaint_class() if isinstance(convpaint_class(), str) else convpaint_class()[1],
            "settings": {k: v for k, v in vars(args).items() if k not in ("out", "report_only", "note", "start")},
            "dock": DOCK,
            "tag": args.tag,
            "variant": {k: v for k, v in SETTINGS.items() if k not in DOCK or DOCK[k] != v},
            "later_rounds": {**CONTINUING, **LATER_ROUNDS},
            "bundled_model_sha256": hashlib.sha256(default_checkpoint_path().read_bytes()).hexdigest()[:16],
            "start_model": str(args.start) if args.start else "bundled",
            "start_model_sha256": hashlib.sha256(start_path.read_bytes()).hexdigest()[:16],
            "git_head": _git_head(),
        })
        warm_up_optimizer().join()  # the dock does this when it opens
        base = load_checkpoint(args.start) if args.start else load_default()
        for part in args.parts:
            for dataset in args.sets:
                for index in held_out(dataset)[args.first_image : args.first_image + args.images]:
                    for condition in args.conditions:
                        key = f"{part}{'+' + args.tag if args.tag else ''}/{dataset}/{condition}/{index}"
                        if key in results["cases"]:
                            continue
                        log(f"{key}")
                        runner = budget_case if part == "budgets" else rounds_case
                        if args.tag:
                            log(f"  variant {args.tag}: {SETTINGS}")
                        results["cases"][key] = runner(dataset, condition, index, args, base)
                        save_json(results, json_path)
                        write_report(results, out)
    write_report(results, out)
    return 0


# -- report -----------------------------------------------------------------------------------
def _fmt(values: list[float], digits: int = 3) -> str:
    """Mean (min–max); '[k/n]' when only k of the n values exist (e.g. no preview yet on the others)."""
    total = len(values)
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    partial = f" [{len(values)}/{total}]" if len(values) < total else ""
    mean = f"{np.mean(values):.{digits}f}"
    if len(values) == 1:
        return mean + partial
    return f"{mean} ({min(values):.{digits}f}–{max(values):.{digits}f}){partial}"


def _groups(results: dict, part: str) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for key, case in results["cases"].items():
        p, dataset, condition, _ = key.split("/")
        if p == part:
            groups.setdefault((dataset, condition), []).append(case)
    order = {(d, c): (SETS.index(d), list(datasets.CONDITIONS).index(c)) for d, c in groups}
    return dict(sorted(groups.items(), key=lambda kv: order[kv[0]]))


def _budgets(results: dict) -> list[float]:
    found = set()
    for key, case in results["cases"].items():
        for kind in ("finetune", "scratch"):
            if kind in case:
                found.update(float(b) for b in case[kind]["preview"])
    return sorted(found)


def _anchor_at(case: dict, name: str, budget: float) -> float | None:
    anchor = case.get(name)
    if not anchor or "miou" not in anchor:
        return None
    return anchor["miou"] if anchor["seconds"] <= budget else None


def _variant_table(part: str, groups: dict, budgets: list[float]) -> list[str]:
    """A variant's results: ours with changed training settings, the forest on the same strokes."""
    first = next(iter(groups.values()))[0]
    changed = {k: v for k, v in first.get("settings", DOCK).items()
               if (k not in DOCK or DOCK[k] != v) and (k not in RETIRED or RETIRED[k] != v)}
    lines = [f"## Variant `{part.split('+', 1)[1]}`: not the dock's defaults ({changed})", "",
             "Same strokes and images as above; the forest is timed again in this run.", "",
             "| case | n | method | first preview (s) | s/step | " + " | ".join(f"{b:g} s" for b in budgets) + " |",
             "|---|---|---|---|---|" + "---|" * len(budgets)]
    for (dataset, condition), cases in groups.items():
        label = f"{dataset}, {condition}"
        have = [c for c in cases if c.get("forest")]
        if have:
            lines.append(f"| {label} | {len(have)} | forest | {_fmt([c['forest']['seconds'] for c in have], 1)} | – | "
                         + " | ".join(_fmt([_anchor_at(c, 'forest', b) for c in have]) for b in budgets) + " |")
        for kind in ("finetune", "scratch"):
            runs = [c[kind] for c in cases if kind in c]
            if runs:
                lines.append(f"| {label} | {len(runs)} | ours, {kind} | {_fmt([r['first_preview'] for r in runs], 1)} | "
                             f"{_fmt([r['s_per_step_median'] for r in runs], 2)} | "
                             + " | ".join(_fmt([(r['preview'].get(str(b)) or {}).get('miou') for r in runs])
                                          for b in budgets) + " |")
    return lines + [""]


def _describe(dock: dict) -> str:
    steps = dock["steps_per_epoch"] or "about one pass"
    norm = "BatchNorm re-estimated on the strokes first (AdaBN)" if dock.get("adapt_norm") else "BatchNorm as trained"
    if dock.get("refresh_norm"):
        norm += " and again after every epoch"
    kept = (", an epoch shown and kept only when it fits the strokes at least as well as the start and the "
            "epochs before (select_on_strokes)") if dock.get("select_on_strokes") else ""
    return (f"{dock['epochs']} epochs of {steps} steps, batch {dock['batch_size']}, {dock['patch_size']}² patches, "
            f"lr {dock['learning_rate']:g}, {dock['val_fraction']:.0%} of the painted pixels held out, "
            f"{norm}{kept}")


def _describe_later(settings: dict) -> str:
    """``average_weights 0.9, select_on_strokes on``: rates as numbers, switches as on/off."""
    return ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {'on' if value else 'off'}"
                     for key, value in settings.items())


def write_report(results: dict, out: Path) -> None:
    budgets = _budgets(results)
    lines = ["# The scribbles benchmark: a few painted strokes → a segmentation, ours vs a pixel classifier", ""]
    stored = out.with_suffix(".json").resolve()
    shown = stored.relative_to(REPO) if stored.is_relative_to(REPO) else stored
    lines += [f"Made by (in this order; each run skips the cases already in `{shown}`):", "", "```bash"]
    lines += list(dict.fromkeys(c["command"] for c in results["commands"])) + ["```", ""]
    if results["commands"]:
        first = results["commands"][0]
        lines += [
            f"Machine: {first['machine']}; load average at the start "
            f"{', '.join(f'{v:.2f}' for v in first['loadavg'])} (per case in the JSON). Every time here is "
            "wall-clock: what else ran on the machine meanwhile is in the notes at the end. napari-convpaint: "
            f"{first['convpaint']}.", "",
        ]
    lines += [
        "What runs (see the docstring of `benchmarks/loop/scribbles.py`): a simulated annotator paints 60 strokes "
        "(3 px brush, ~30 px long, balanced over the classes, each inside its class) on held-out images "
        "(nist-phase: the bundled model's test tiles; vnc-em: central 512² crop), clean and at the two "
        "low-light levels of `benchmarks/paper/reproduce.py`. **forest**: RandomForestClassifier(100 trees, n_jobs=2) "
        "on multiscale_basic_features (sigmas 1–16), time = features + fit + predict. **convpaint**: "
        "ConvpaintModel(alias='gaussian'), train + segment. **ours**: the Train dock's job "
        f"(`training_job`, the dock's fine-tuning settings: {_describe(results.get('dock', DOCK))}, live preview "
        "on, torch threads as the dock sets them) fine-tuning the bundled model (**fine-tune**), or a new "
        "width-16 model with the dock's settings for a new model (**scratch**); its mIoU at t seconds is that "
        "of the last live preview shown by t (clock from pressing Train, scoring excluded). mIoU is over "
        "the whole image vs its full ground truth. Cells: mean over images (min–max); '–' = nothing to "
        "show yet at that time; '[k/n]' = only k of the n images had something to show by then.", "",
    ]
    groups = _groups(results, "budgets")
    if groups:
        lines += ["## mIoU against wall-clock time", ""]
        lines += ["| case | n | method | time (s) | " + " | ".join(f"{b:g} s" for b in budgets) + " |"]
        lines += ["|---|---|---|---|" + "---|" * len(budgets)]
        for (dataset, condition), cases in groups.items():
            label = f"{dataset}, {condition}"
            n = len(cases)
            if any("bundled" in c for c in cases):
                lines.append(f"| {label} | {n} | bundled model, no training | 0 | "
                             + " | ".join(_fmt([c.get("bundled", {}).get("miou") for c in cases]) for _ in budgets) + " |")
            for name in ("forest", "convpaint"):
                have = [c for c in cases if c.get(name) and "miou" in c[name]]
                if have:
                    lines.append(f"| {label} | {len(have)} | {name} | {_fmt([c[name]['seconds'] for c in have], 1)} | "
                                 + " | ".join(_fmt([_anchor_at(c, name, b) for c in have]) for b in budgets) + " |")
            for kind, title in (("finetune", "ours, fine-tune bundled"), ("scratch", "ours, from scratch")):
                have = [c for c in cases if kind in c]
                if have:
                    cells = []
                    for b in budgets:
                        cells.append(_fmt([(c[kind]["preview"].get(str(b)) or {}).get("miou") for c in have]))
                    lines.append(f"| {label} | {len(have)} | {title} (first preview) | "
                                 f"{_fmt([c[kind]['first_preview'] for c in have], 1)} | " + " | ".join(cells) + " |")
        lines += [""]
        lines += ["### Against the targets of issue #9 §2 (ours fine-tuning − forest, mean over images)", ""]
        lines += ["| case | forest | ours @30 s | Δ @30 s (target ≥ 0) | ours @120 s | Δ @120 s | first preview (target ≤ 5 s) |",
                  "|---|---|---|---|---|---|---|"]
        for (dataset, condition), cases in groups.items():
            have = [c for c in cases if "finetune" in c and "forest" in c]
            if not have:
                continue
            f = [c["forest"]["miou"] for c in have]

            def at(b):
                return [(c["finetune"]["preview"].get(str(float(b))) or {}).get("miou") for c in have]

            def delta(b):
                vals = at(b)
                return [None if v is None else v - fm for v, fm in zip(vals, f)]

            want = " (target ≥ +0.03)" if condition != "clean" else ""
            lines.append(f"| {dataset}, {condition} | {_fmt(f)} | {_fmt(at(30))} | {_fmt(delta(30), 3)} | "
                         f"{_fmt(at(120))} | {_fmt(delta(120), 3)}{want} | "
                         f"{_fmt([c['finetune']['first_preview'] for c in have], 1)} |")
        lines += [""]
        lines += ["### How fast ours trains (diagnosis)", ""]
        lines += ["| case | method | s/step (median) | steps/epoch | steps by the end | epochs by the end | "
                  "previews | first step (s) | ended by | `last` weights @30 s | `last` @120 s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for (dataset, condition), cases in groups.items():
            for kind in ("finetune", "scratch"):
                have = [c[kind] for c in cases if kind in c]
                if not have:
                    continue
                lines.append(
                    f"| {dataset}, {condition} | {kind} | {_fmt([r['s_per_step_median'] for r in have], 2)} | "
                    f"{_fmt([r['steps_per_epoch'] for r in have], 0)} | {_fmt([r['steps'] for r in have], 0)} | "
                    f"{_fmt([r['epochs_run'] for r in have], 0)} | {_fmt([len(r['previews']) for r in have], 0)} | "
                    f"{_fmt([r['first_step_s'] for r in have], 1)} | {', '.join(sorted({r['ended'] for r in have}))} | "
                    f"{_fmt([(r['last'].get('30.0') or {}).get('miou') for r in have])} | "
                    f"{_fmt([(r['last'].get('120.0') or {}).get('miou') for r in have])} |")
        lines += [""]
    for part in sorted({key.split("/")[0] for key in results["cases"] if key.startswith("budgets+")}):
        lines += _variant_table(part, _groups(results, part), budgets)
    rounds = _groups(results, "rounds")
    if rounds:
        some = next(iter(rounds.values()))[0]
        lines += ["## Rounds: which strokes to add next", "",
                  f"Round 0: the 60 strokes, fine-tuning the bundled model for {some['round_seconds']:g} s of the "
                  f"dock's clock. Each later round adds {some['round_strokes']} strokes (balanced over the classes) "
                  f"and fine-tunes {some['round_seconds']:g} s more from the previous round's model (the "
                  "best by validation, as the dock returns it), "
                  + (f"continuing with {_describe_later(some['later_rounds'])} (the dock's rule for a further "
                     "round, `engine.plan.CONTINUE_DEFAULTS`)" if some.get("later_rounds")
                     else "with the first round's settings") + ". "
                  "(a) random seeds; (b) seeds at the maxima of "
                  "the current model's branch disagreement (`Prediction.disagreement`, smoothed σ=2 px), "
                  "within each class; (c) seeds at the maxima of its errors (oracle); (s) seeds drawn in "
                  "proportion to the disagreement; (q) the same inside the squares of the dock's \"paint here "
                  "next\" cue (`engine.uncertainty.uncertain_regions`). The forest is refitted on "
                  "the same strokes each round. mIoU, mean over images (min–max).", ""]
        n_rounds = max(len(h) for cases in rounds.values() for c in cases for h in c["strategies"].values())
        lines += ["| case | n | strategy | " + " | ".join(f"round {r}" for r in range(n_rounds))
                  + " | forest, same strokes: round 0 → last |"]
        lines += ["|---|---|---|" + "---|" * n_rounds + "---|"]
        for (dataset, condition), cases in rounds.items():
            for key, title in STRATEGIES.items():
                have = [c["strategies"][key] for c in cases if key in c["strategies"]]
                if not have:
                    continue
                cells = [_fmt([h[r]["miou"] for h in have if r < len(h)]) for r in range(n_rounds)]
                forest = f"{_fmt([h[0]['forest'] for h in have])} → {_fmt([h[-1]['forest'] for h in have])}"
                lines.append(f"| {dataset}, {condition} | {len(have)} | ({key}) {title} | " + " | ".join(cells)
                             + f" | {forest} |")
        lines += ["", "Where the added strokes went: the current prediction's branch disagreement and error "
                  "rate under the strokes each strategy added, mean over rounds 1–last (min–max over rounds "
                  "and images):", ""]
        lines += ["| case | strategy | disagreement under new strokes | error rate under new strokes |", "|---|---|---|---|"]
        for (dataset, condition), cases in rounds.items():
            for key, title in STRATEGIES.items():
                have = [h for c in cases if key in c["strategies"] for h in c["strategies"][key][1:]]
                if have:
                    lines.append(f"| {dataset}, {condition} | ({key}) {title} | "
                                 f"{_fmt([h['new_strokes_disagreement'] for h in have])} | "
                                 f"{_fmt([h['new_strokes_error_rate'] for h in have])} |")
        lines += [""]
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in results["notes"]] + [""]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if groups:
        plot(groups, budgets, out.with_suffix(".png"))


def plot(groups: dict, budgets: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in SETS if any(d == k[0] for k in groups)]
    conditions = [c for c in datasets.CONDITIONS if any(c == k[1] for k in groups)]
    fig, axes = plt.subplots(len(datasets), len(conditions), figsize=(4.2 * len(conditions), 3.4 * len(datasets)),
                             squeeze=False, sharex=True)
    for (dataset, condition), cases in groups.items():
        ax = axes[datasets.index(dataset), conditions.index(condition)]
        for kind, color, title in (("finetune", "C0", "ours, fine-tune"), ("scratch", "C2", "ours, scratch")):
            have = [c for c in cases if kind in c]
            if not have:
                continue
            xs, means, lows, highs = [], [], [], []
            for b in budgets:
                vals = [(c[kind]["preview"].get(str(b)) or {}).get("miou") for c in have]
                vals = [v for v in vals if v is not None]
                if vals:
                    xs.append(b), means.append(np.mean(vals)), lows.append(min(vals)), highs.append(max(vals))
            ax.plot(xs, means, "o-", color=color, label=title)
            ax.fill_between(xs, lows, highs, color=color, alpha=0.2)
        for name, color, marker in (("forest", "C3", "s"), ("convpaint", "C1", "^")):
            have = [c[name] for c in cases if c.get(name) and "miou" in c[name]]
            if have:
                t, m = np.mean([h["seconds"] for h in have]), np.mean([h["miou"] for h in have])
                ax.axhline(m, color=color, ls="--", lw=1)
                ax.plot([t], [m], marker, color=color, label=f"{name} ({t:.1f} s)")
        bundled = [c["bundled"]["miou"] for c in cases if "bundled" in c]
        if bundled:
            ax.axhline(np.mean(bundled), color="gray", ls=":", lw=1, label="bundled, untrained")
        ax.set_xscale("log")
        ax.set_title(f"{dataset}, {condition} (n={len(cases)})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    for ax in axes[-1]:
        ax.set_xlabel("wall-clock seconds from Train")
    for row in axes:
        row[0].set_ylabel("mIoU (whole image)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
