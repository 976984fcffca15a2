"""Segmentation as napari layer-data tuples (no Qt): the compute path of the Segment widget.

``segment_layers`` is a generator (progress events, then the layers) that the widget runs in a
``thread_worker`` and tests run headless. Layers come in reading order, which is the grid
order: translation filters, translated images, branch outputs, ensemble, disagreement, and the
"paint here next" squares (shown over the ensemble in overlay mode).

Every Labels layer holds painted values (``engine.labels``: 0 = unlabelled, class k is k + 1),
so the ensemble layer can be corrected with the brush and trained on as it is; it keeps its
predicted values under ``PREDICTION`` so that training can weigh the corrections.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.colormaps.standardize_color import transform_color

from ..engine.checkpoint import LoadedModel
from ..engine.events import Progress
from ..engine.images.instances import AUTO, ClassChoice, Instances, find_instances, measure_instances
from ..engine.images.labels import to_painted
from ..engine.images.layout import find_channel_axis
from ..engine.prediction.familiarity import limits_for, measure_familiarity
from ..engine.prediction.inference import Prediction, predict_iter
from ..engine.prediction.uncertainty import uncertain_regions
from .image_input import output_geometry

MARKER = "napari_cellprep"
"""Metadata key that marks the layers this plugin made (value: what they show and from which image)."""

PREDICTION = "napari_cellprep_prediction"
"""Metadata key of the ensemble layer's values as predicted (painted values; kept when the user
paints on the layer, to tell corrections from accepted pixels)."""


def kept_prediction(metadata: dict, shape: tuple[int, ...]) -> np.ndarray | None:
    """The predicted values a segmentation layer keeps (``PREDICTION``), if they still match the
    shape of its data (``None`` for a stroke layer, or one whose data was replaced)."""
    predicted = metadata.get(PREDICTION)
    return predicted if predicted is not None and np.shape(predicted) == tuple(shape) else None


SHOWABLE = ("filters", "translated", "branches", "disagreement")
"""The optional outputs a user can tick; the ensemble labels are always shown."""

LayerData = tuple[Any, dict[str, Any], str]


def layer_prefix(source: str) -> str:
    """Name prefix of the output layers made from the image layer named ``source``."""
    return f"{source} | "


def is_output_of(name: str, metadata: dict, source: str) -> bool:
    """Whether a layer (by name and metadata) is one of our outputs for ``source``.

    Both must hold: our marker names ``source`` and the name still has our prefix (a layer the
    user renamed is theirs from then on).
    """
    marker = metadata.get(MARKER)
    return (
        isinstance(marker, dict) and marker.get("source") == source and name.startswith(layer_prefix(source))
    )


BACKGROUND_ALPHA = 0.25
"""Opacity of class 0 (the background) in label layers: faint, so the image shows through."""


def class_colormap(class_colors: Sequence[str]) -> DirectLabelColormap:
    """Painted value k + 1 = class k in the checkpoint's colour, class 0 faint; 0 (unlabelled)
    and unknown values transparent."""
    colors: dict[int | None, Any] = {None: "transparent", 0: "transparent"}
    for k, color in enumerate(class_colors):
        rgba = np.array(transform_color(color)[0])
        if k == 0:
            rgba[3] = BACKGROUND_ALPHA
        colors[k + 1] = rgba
    return DirectLabelColormap(color_dict=colors)


def robust_limits(data: np.ndarray, max_samples: int = 1_000_000) -> tuple[float, float]:
    """Contrast limits from the 0.5 and 99.5 percentiles, so a few bright pixels at tile or
    image edges do not leave the rest of a filter black."""
    values = data.reshape(-1)[:: data.size // max_samples + 1]
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (low, high) if high > low else (low, low + 1e-6)


def _channels_last(translated: np.ndarray) -> tuple[np.ndarray, bool]:
    """A translated image (*lead, Cin, H, W) as a displayable array and whether it is RGB."""
    cin = translated.shape[-3]
    if cin == 1:
        return translated[..., 0, :, :], False
    if cin == 3:
        return np.moveaxis(translated, -3, -1), True
    return translated.mean(axis=-3), False


def prediction_layers(
    prediction: Prediction,
    source: str,
    class_colors: Sequence[str],
    show: Collection[str] = SHOWABLE,
    geometry: dict[str, tuple[float, ...]] | None = None,
    objects: tuple[Instances, dict[str, np.ndarray]] | None = None,
    annotated: Sequence[np.ndarray] = (),
) -> list[LayerData]:
    """Layer-data tuples for a prediction on the image layer named ``source``, in reading order.

    ``class_colors`` are the model's (``ModelInfo.class_colors``). ``show`` picks the optional
    outputs (``SHOWABLE``). Filters are Image layers with a perceptual colormap, translated
    images gray, branch outputs and the ensemble Labels layers (painted values: class k is
    k + 1, in the model's colours), disagreement an Image in 0..1 and, with it, the squares
    where the branches disagree most (a Shapes layer, ``cue_layer``). ``objects`` (instances and
    their measurements, ``engine.instances``) add a Labels layer of the objects after the
    ensemble, the measurements its ``features`` (napari's features table, one row per object).
    ``annotated``: masks of the pixels the user already labeled (``engine.labels.annotated_pixels``);
    those of the labels' shape steer the cue away from what is painted.
    """
    unknown = set(show) - set(SHOWABLE)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {SHOWABLE}")
    prefix, classes = layer_prefix(source), prediction.class_names
    geometry = geometry or {}
    colormap = class_colormap(class_colors)

    def meta(name: str, output: str, **kwargs: Any) -> dict[str, Any]:
        marker = {"source": source, "output": output, **kwargs.pop("marker", {})}
        metadata = {MARKER: marker, **kwargs.pop("metadata", {})}
        return {"name": prefix + name, "metadata": metadata, **geometry, **kwargs}

    layers: list[LayerData] = []
    if "filters" in show and prediction.filters is not None:
        for k in range(len(classes)):
            data = prediction.filters[..., k, :, :]
            limits = robust_limits(data)
            layers.append(
                (
                    data,
                    meta(f"filter {k + 1}", "filter", colormap="magma", contrast_limits=limits),
                    "image",
                )
            )
    if "translated" in show and prediction.translated is not None:
        for k in range(len(classes)):
            data, rgb = _channels_last(prediction.translated[..., k, :, :, :])
            view = dict(rgb=True) if rgb else dict(colormap="gray", contrast_limits=robust_limits(data))
            layers.append((data, meta(f"translated t{k + 1}", "translated", **view), "image"))
    multi_branch = prediction.branch_labels is not None and prediction.branch_labels.shape[-3] > 1
    if "branches" in show and multi_branch:
        for s, name in enumerate(prediction.output_names):
            data = to_painted(prediction.branch_labels[..., s, :, :], len(classes))
            layers.append((data, meta(f"branch {s + 1}: {name}", "branch", colormap=colormap), "labels"))
    if "branches" in show and prediction.classifier_labels is not None:
        data = to_painted(prediction.classifier_labels, len(classes))
        name = f"pixel classifier (weight {prediction.classifier_weight:.2f})"
        layers.append((data, meta(name, "classifier", colormap=colormap), "labels"))
    features = {"index": np.arange(len(classes)) + 1, "class": list(classes)}
    provenance = {
        "class_names": list(classes),
        "output_names": list(prediction.output_names),
        "ensemble_weights": [float(w) for w in prediction.ensemble_weights],
        "device": prediction.device,
        "classifier_weight": prediction.classifier_weight,
        "precision": prediction.precision,
    }
    painted = to_painted(prediction.labels, len(classes))
    ensemble = meta(
        "ensemble",
        "ensemble",
        colormap=colormap,
        features=features,
        marker=provenance,
        metadata={PREDICTION: painted.copy()},
    )
    layers.append((painted, ensemble, "labels"))
    if objects is not None:
        found, table = objects
        layers.append(
            (found.labels, meta("objects", "objects", features={"index": table["label"], **table}), "labels")
        )
    if "disagreement" in show and prediction.disagreement is not None:
        data = prediction.disagreement
        layers.append(
            (
                data,
                meta("branch disagreement", "disagreement", colormap="inferno", contrast_limits=(0.0, 1.0)),
                "image",
            )
        )
        layers.append(cue_layer(data, meta("paint here next", "cue"), annotated))
    return layers


def cue_layer(
    disagreement: np.ndarray, meta: dict[str, Any], annotated: Sequence[np.ndarray] = ()
) -> LayerData:
    """The "paint here next" cue: a numbered outline around each of the squares where the branches
    disagree most (``engine.uncertainty``), listed most uncertain first in the marker; the
    disagreement near pixels already ``annotated`` (masks of other shapes are ignored) is
    discounted, so the cue spreads over what is not painted yet."""
    matching = [np.asarray(mask) for mask in annotated if np.shape(mask) == disagreement.shape]
    painted = np.logical_or.reduce(matching) if matching else None
    regions = uncertain_regions(disagreement, painted=painted)
    shapes = [
        np.array([[*r.plane, y, x] for y, x in corners], dtype=float)
        for r in regions
        for corners in [[(r.top, r.left), (r.top, r.right), (r.bottom, r.right), (r.bottom, r.left)]]
    ]
    shapes = [shape - np.r_[np.zeros(shape.shape[1] - 2), 0.5, 0.5] for shape in shapes]  # pixel edges
    meta["metadata"][MARKER]["regions"] = [asdict(r) for r in regions]
    style = dict(
        shape_type="rectangle",
        edge_color="#00e5ff",
        face_color="transparent",
        edge_width=1,
        features={"rank": np.arange(1, len(regions) + 1), "disagreement": [r.score for r in regions]},
        text={"string": "paint here next: {rank}", "color": "#00e5ff", "anchor": "upper_left", "size": 8},
        ndim=disagreement.ndim,
    )
    return shapes, {**meta, **style}, "shapes"


def engine_outputs(show: Collection[str]) -> tuple[str, ...]:
    """The optional engine outputs (``inference.OUTPUTS``, and the pixel classifier's labels with
    the branches) that the shown layers need."""
    wanted = {"filters", "translated", "branches", "disagreement"} & set(show)
    return tuple(sorted(wanted | ({"classifier"} if "branches" in wanted else set())))


def segment_layers(
    image: np.ndarray,
    loaded: LoadedModel,
    *,
    source: str,
    rgb: bool = False,
    show: Collection[str] = SHOWABLE,
    tile: int = 256,
    device: str | None = None,
    precision: str = "auto",
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    instances: bool = False,
    min_size: int = 0,
    boundary_class: ClassChoice = AUTO,
    annotated: Sequence[np.ndarray] = (),
) -> Generator[Progress, None, list[LayerData]]:
    """Segment an image layer's data; yield progress, return the output layers in reading order.

    ``rgb`` is the layer's ``rgb`` flag (channel last); ``scale``/``translate`` are the layer's,
    so outputs overlay it. ``device`` ``None``/``"auto"`` picks the best device, ``precision``
    ``"auto"`` its default precision (``engine.devices.default_precision``). The ensemble
    layer's marker holds ``familiarity`` (``engine.familiarity``: is the image like the training
    data?) as a dict. ``instances`` adds the objects layer (``min_size``, ``boundary_class``:
    ``engine.instances.find_instances``) with its measurements. ``annotated``: the pixels already
    labeled, for the cue (``prediction_layers``).
    """
    channel_axis = find_channel_axis(image.shape, loaded.info.config.in_channels, rgb=rgb)
    prediction = yield from predict_iter(
        loaded,
        image,
        rgb=rgb,
        tile=tile,
        overlap=tile // 4,
        outputs=(*engine_outputs(show), "probabilities", *(("disagreement",) if instances else ())),
        device=device or "auto",
        precision=precision,
    )
    planes = image if channel_axis is None else np.moveaxis(image, channel_axis, 0)
    familiarity = measure_familiarity(
        prediction.probabilities, prediction.disagreement, planes, limits_for(loaded.info.training)
    )
    prediction.probabilities = None  # only needed for the measure: free it before the layers
    geometry = None
    if scale is not None and translate is not None:
        geometry = output_geometry(scale, translate, channel_axis, rgb)
    objects = None
    if instances:
        found = find_instances(
            prediction.labels, prediction.class_names, boundary_class=boundary_class, min_size=min_size
        )
        table = measure_instances(found, image, prediction.disagreement, rgb=rgb, channel_axis=channel_axis)
        objects = (found, table)
    layers = prediction_layers(
        prediction, source, loaded.info.class_colors, show, geometry, objects, annotated=annotated
    )
    markers = [meta["metadata"][MARKER] for _, meta, _ in layers]
    next(m for m in markers if m["output"] == "ensemble")["familiarity"] = asdict(familiarity)
    return layers
