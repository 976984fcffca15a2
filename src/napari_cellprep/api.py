"""The public Python API, for notebooks and scripts: ``import napari_cellprep as cp``.

``cp.load`` a model, ``cp.predict`` an image (a ``Prediction``), ``cp.train`` a new model or
``cp.fine_tune`` one on arrays, ``cp.save`` it, and ``cp.instances`` / ``cp.measure`` the
objects of a prediction. Label arrays are never guessed: ``labels_kind`` says whether they hold
painted values (0 = not annotated, v = class v − 1, as a napari Labels layer) or class indices.
Errors a user can fix raise ``CellprepError``. No napari, no Qt.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import _API
from .engine.checkpoint import LoadedModel, load_model, save_checkpoint
from .engine.devices import resolve_device
from .engine.errors import CellprepError, SettingsError  # noqa: F401  (CellprepError: in __all__)
from .engine.events import EpochEnd, StepEnd, drive
from .engine.images.instances import (  # noqa: F401  (write_measurements: in __all__)
    Instances,
    find_instances,
    measure_instances,
    write_measurements,
)
from .engine.images.labels import LabelKind
from .engine.prediction.inference import Prediction, predict_iter
from .engine.training.loop import TrainingResult
from .engine.training.recipe import LabeledInput, prepare_run

LabelsKind = Literal["painted", "class_index"]
ModelLike = LoadedModel | str | os.PathLike
Images = np.ndarray | Sequence[np.ndarray]
Callback = Callable[[StepEnd | EpochEnd], None]

__all__ = list(_API)


def load(name_or_path: str | os.PathLike = "default", device: str = "auto") -> LoadedModel:
    """A model from a ``.cellprep`` file, or ``"default"`` (the bundled model), on ``device``
    (``"auto"``: CUDA, then Apple MPS, then the CPU)."""
    if not isinstance(name_or_path, str | os.PathLike):
        raise SettingsError(
            f"load takes a .cellprep file path or 'default', not a {type(name_or_path).__name__} "
            f"(a loaded model is used as it is: pass it to predict, fine_tune or save)"
        )
    return load_model(name_or_path, resolve_device(device))


def _model(model: ModelLike, device: str | None) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load(model, device or "auto")


def predict(
    model: ModelLike,
    image: np.ndarray,
    *,
    outputs: Iterable[str] = (),
    rgb: bool | None = None,
    channel_axis: int | None = None,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 4,
    device: str | None = None,
    precision: str = "auto",
) -> Prediction:
    """Segment ``image``; ``.labels`` are class indices (0..C−1) of the input's shape.

    ``outputs`` adds full-size maps (``engine.inference.OUTPUTS``): ``filters``, ``translated``,
    ``branches`` (branch probabilities and labels, disagreement), ``probabilities``,
    ``disagreement``; without them only the labels are allocated. ``image`` is (Y, X), RGB(A)
    (``rgb``), multi-channel (``channel_axis``) or a stack of such planes. Large images run tile
    by tile. ``device`` None: the model's own (a model named by path loads on ``"auto"``).
    ``precision``: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (autocast), or ``"auto"``: 16-bit
    where the device runs it natively and it met the accuracy bar (``engine.devices.default_precision``),
    else float32. ``.precision`` of the result says which ran.
    """
    loaded = _model(model, device)
    return drive(
        predict_iter(
            loaded,
            image,
            rgb=rgb,
            channel_axis=channel_axis,
            tile=tile,
            overlap=overlap,
            batch_size=batch_size,
            outputs=outputs,
            device=device,
            precision=precision,
        )
    )


def instances(
    prediction: Prediction,
    *,
    boundary_class: int | str | None = "auto",
    objects: Sequence[int | str] | None = None,
    min_size: int = 0,
) -> Instances:
    """The objects of a prediction: ``.labels`` (0 = none, 1..N) and ``.classes`` (class of
    object i at ``i - 1``). Connected regions of the object classes (default: all but class 0
    and the boundary); with a boundary class (``"auto"``: one named like a boundary or membrane
    in the model, ``None``: none) a seeded watershed (``engine.instances``)."""
    if not isinstance(prediction, Prediction):
        raise SettingsError(
            f"instances takes the Prediction that predict returns, not a {type(prediction).__name__}"
        )
    return find_instances(
        prediction.labels,
        prediction.class_names,
        boundary_class=boundary_class,
        objects=objects,
        min_size=min_size,
    )


def measure(
    found: Instances,
    image: np.ndarray,
    prediction: Prediction | None = None,
    *,
    rgb: bool | None = None,
    channel_axis: int | None = None,
) -> dict[str, np.ndarray]:
    """One row per object, as columns (``pandas.DataFrame(table)`` makes a data frame): label,
    class, area, centroid, bounding box, mean/min/max intensity of ``image`` and, when
    ``prediction`` holds the disagreement map (``outputs=("disagreement",)``), the mean branch
    disagreement inside the object and ``confidence`` = 1 − it. ``write_measurements`` saves CSV."""
    disagreement = prediction.disagreement if prediction is not None else None
    return measure_instances(found, image, disagreement, rgb=rgb, channel_axis=channel_axis)


def save(model: LoadedModel, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` as a ``.cellprep`` checkpoint (an existing file is kept unless ``overwrite``)."""
    return save_checkpoint(path, model.model, model.info, overwrite=overwrite, classifier=model.classifier)


def _inputs(images: Images, labels: Images, what: str, name: str, rgb: bool | None) -> list[LabeledInput]:
    """The labeled inputs of one array each or of two sequences of the same length."""
    if isinstance(images, np.ndarray) != isinstance(labels, np.ndarray):
        raise SettingsError(f"{what}: give one image and one label array, or two lists of the same length")
    images, labels = ([images], [labels]) if isinstance(images, np.ndarray) else (list(images), list(labels))
    if len(images) != len(labels) or not images:
        raise SettingsError(f"{what}: {len(images)} image(s) but {len(labels)} label array(s)")
    pairs = enumerate(zip(images, labels))
    return [LabeledInput(image, mask, f"{name} {i}", rgb) for i, (image, mask) in pairs]


def _kind(labels_kind: LabelsKind | LabelKind) -> LabelKind:
    if isinstance(labels_kind, LabelKind):
        return labels_kind
    kinds = {"painted": LabelKind.PAINTED, "class_index": LabelKind.CLASS_INDEX}
    if labels_kind not in kinds:
        raise SettingsError(f"labels_kind must be 'painted' or 'class_index', got {labels_kind!r}")
    return kinds[labels_kind]


SETTINGS = ("epochs", "batch_size", "learning_rate", "patch_size", "steps_per_epoch", "seconds", "seed")
"""The ``TrainConfig`` fields both training functions take (``None``: the engine's default)."""
FINE_TUNE_SETTINGS = (
    "adapt_norm",
    "refresh_norm",
    "freeze_norm",
    "fit_heads",
    "cpu_bfloat16",
    "average_weights",
    "select_on_strokes",
)
"""The further ``TrainConfig`` fields ``fine_tune`` takes."""


def _run(init: LoadedModel | None, given: dict[str, Any]) -> TrainingResult:
    """Both training entry points (``given``: their arguments): the engine's run plan
    (``engine.training.recipe.prepare_run``), its warnings as ``UserWarning``, then the run."""
    rgb, validation = given["rgb"], given["validation"]
    if isinstance(validation, tuple):
        validation = _inputs(*validation, "validation data", "validation image", rgb)
    elif validation is not None and not 0.0 <= validation < 1.0:
        raise SettingsError(f"validation must be a fraction in [0, 1) or (images, labels), got {validation}")
    settings = {k: given[k] for k in (*SETTINGS, *FINE_TUNE_SETTINGS) if given.get(k) is not None}
    plan = prepare_run(
        _inputs(given["images"], given["labels"], "training data", "image", rgb),
        kind=_kind(given["labels_kind"]),
        init=init,
        channel_axis=given["channel_axis"],
        num_classes=given["num_classes"],
        class_names=given["class_names"],
        architecture=given.get("architecture"),
        normalization=given.get("normalization"),
        settings={**settings, "device": given["device"]},
        validation=validation,
        name=given["name"],
    )
    for message in plan.warnings:
        warnings.warn(message, UserWarning, stacklevel=3)
    return drive(plan.train_iter(), given["callback"])


def train(
    images: Images,
    labels: Images,
    *,
    labels_kind: LabelsKind,
    architecture: str | Mapping[str, Any] = "default",
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    normalization: Literal["minmax", "percentile"] = "minmax",
    validation: float | tuple[Images, Images] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    patch_size: int | None = None,
    steps_per_epoch: int | None = None,
    seconds: float | None = None,
    seed: int | None = None,
    device: str = "auto",
    rgb: bool | None = None,
    channel_axis: int | None = None,
    name: str = "",
    callback: Callback | None = None,
) -> TrainingResult:
    """Train a new model on images and their labels; ``.model`` is the best model (in memory).

    ``labels_kind`` (required): ``"painted"`` (0 = not annotated, v = class v − 1: sparse
    strokes train) or ``"class_index"`` (k = class k, −1 = unlabeled). ``architecture`` is a
    named configuration (``"default"``, ``"paper"``) or ``ModelConfig`` fields (e.g.
    ``{"width": 8, "depth": 3}``). ``validation``: a held-out fraction of the labeled pixels
    (default 0.2) or ``(images, labels)``. Settings left ``None`` take the engine's defaults
    (``engine.plan.TrainConfig``); ``callback`` sees every step and epoch event.
    """
    return _run(None, dict(locals()))


def fine_tune(
    model: ModelLike,
    images: Images,
    labels: Images,
    *,
    labels_kind: LabelsKind,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    validation: float | tuple[Images, Images] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    patch_size: int | None = None,
    steps_per_epoch: int | None = None,
    seconds: float | None = None,
    seed: int | None = None,
    adapt_norm: bool | None = None,
    refresh_norm: bool | None = None,
    freeze_norm: bool | None = None,
    fit_heads: bool | None = None,
    cpu_bfloat16: bool | None = None,
    average_weights: float | None = None,
    select_on_strokes: bool | None = None,
    device: str = "auto",
    rgb: bool | None = None,
    channel_axis: int | None = None,
    name: str = "",
    callback: Callback | None = None,
) -> TrainingResult:
    """Fine-tune ``model`` (a loaded model, a ``.cellprep`` path or ``"default"``) by the rule
    the Train dock and ``cellprep train --init`` use: its architecture and normalisation kept,
    the fine-tuning defaults (``engine.plan.FINE_TUNE_DEFAULTS``, no held-out pixels), the class
    count may change. ``adapt_norm`` (re-estimate BatchNorm statistics on the new images first),
    ``refresh_norm`` (again after every epoch), ``freeze_norm`` (keep them fixed), ``fit_heads``
    (new heads fitted to the labels before the first step) and ``cpu_bfloat16``
    (bfloat16 steps on a CPU that has it in hardware): ``engine.plan.TrainConfig``. A ``model``
    that was itself fine-tuned on these images continues by ``engine.plan.CONTINUE_DEFAULTS``
    (``average_weights``). ``labels_kind`` and the other arguments as in ``train``.
    """
    given = dict(locals())
    return _run(_model(given.pop("model"), device), given)
