"""Tiled sliding-window prediction of images of any size, with memory bounded by the tile.

How a plane is tiled, and why the result equals one whole-image pass:

- The plane is conceptually padded at its bottom/right to the model's size multiple ``m``
  exactly as the network pads a whole image (reflect, or replicate for tiny images); tiles read
  those padded pixels by index, so no padded copy of the plane is made.
- Tile origins lie on a grid with stride ``tile - overlap``; the last tile is flush with the
  padded edge. Tile, stride and hence every origin are multiples of ``m``, so pooling sees the
  same pixel groups as in a whole-image pass. A plane smaller than a tile is one tile.
- Each tile's outputs are weighted by a separable window that is 0 within ``overlap/4`` of a
  tile edge inside the image, ramps linearly to 1 at ``3·overlap/4`` and is 1 along edges on
  the image border. Neighbouring windows sum to exactly 1 and a pixel is only taken from tiles
  where it has at least ``overlap/4`` pixels of context. Sums are divided by the weight total.
- Hence, when ``overlap/4`` is at least the network's receptive-field radius (CellPrep: 46 px
  at depth 2, 190 px at depth 4; U-Net: 22 and 94 px; with ``upsample="resize"`` each level's
  3×3 convolution adds to it: 57 px for CellPrep and 29 px for U-Net at depth 2, and
  ``downsample="blur"`` adds the blur's reach at each level), tiled outputs equal a whole-image pass
  up to float rounding (tests/test_inference.py checks this). Smaller overlaps, such as the
  default 64, approximate it: a tile edge's zero padding then reaches pixels near the seams,
  which trained networks, whose effective receptive field is much smaller, mostly ignore.

Softmax probabilities (not logits), filters and translated images are what is blended.
Memory: the outputs themselves plus accumulators for one band of tile rows (height ``tile``,
full width) and one batch of tiles in torch. Labels, branch labels and the disagreement map are
computed band by band as the band's rows are finished. Normalisation statistics are taken per
plane over the whole plane (``info.normalization``), never per tile.
"""

from __future__ import annotations

import copy
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ...model import CellPrepNet, ModelConfig, SegmentationNet, output_names
from ...model.networks import pad_mode
from ..checkpoint import LoadedModel
from ..classifier.fast import blend
from ..devices import autocast_dtype, describe_device, resolve_device, resolve_precision
from ..errors import SettingsError
from ..events import Progress, drive
from ..images.labels import labels_dtype
from ..images.layout import to_planes
from ..images.normalize import channel_stats, count_nonfinite, normalize_channels, report_nonfinite

OUTPUTS = ("filters", "translated", "branches", "probabilities", "disagreement")
"""Optional outputs; the ensemble labels are always produced. ``branches`` gives the branch
probabilities, branch labels and the disagreement map; ``disagreement`` the map alone (the branch
probabilities are then blended band by band and never kept at full size)."""

ASKED_ONLY = ("classifier",)
"""Optional outputs given only when named (not among ``OUTPUTS``, which the faces ask for as
"everything"): ``classifier``, the labels of the model's pixel classifier alone, for models with
one (``LoadedModel.classifier``)."""

@dataclass
class Prediction:
    """Everything a prediction returns, at the input's full size.

    ``*lead`` is the shape of the input's plane axes (e.g. ``(Z,)``), empty for a 2D image.
    ``disagreement`` is the mean over the S branches of the total-variation distance between
    the branch's and the ensemble's class probabilities, ``0.5 · Σ_c |p_s,c − p_c|``: 0 where
    every branch agrees with the ensemble, 1 where each branch puts all probability on classes
    the ensemble rules out. Branch outputs are ``None`` for a plain U-Net (its one branch is
    the ensemble), as are ``filters`` and ``translated``, and any output not asked for.
    """

    labels: np.ndarray  # (*lead, H, W) uint8 (uint16 if C > 255) class indices of the ensemble
    probabilities: np.ndarray | None  # (*lead, C, H, W) float32
    filters: np.ndarray | None  # (*lead, C, H, W) float32
    translated: np.ndarray | None  # (*lead, C, Cin, H, W) float32
    branch_probabilities: np.ndarray | None  # (*lead, S, C, H, W) float32
    branch_labels: np.ndarray | None  # (*lead, S, H, W)
    disagreement: np.ndarray | None  # (*lead, H, W) float32 in 0..1
    ensemble_weights: np.ndarray  # (S,)
    output_names: list[str]
    class_names: list[str]
    device: str  # describe_device text
    precision: str  # what the network ran in: float32, bfloat16 or float16 (autocast)
    classifier_labels: np.ndarray | None = None  # (*lead, H, W) the pixel classifier's own labels
    classifier_weight: float | None = None  # its weight in the ensemble (None: the model has none)


def check_outputs(outputs: Iterable[str]) -> frozenset[str]:
    """The requested optional outputs, checked against ``OUTPUTS`` and ``ASKED_ONLY``."""
    wanted = frozenset([outputs] if isinstance(outputs, str) else outputs)
    unknown = wanted - set(OUTPUTS + ASKED_ONLY)
    if unknown:
        raise SettingsError(f"unknown outputs {sorted(unknown)}; choose from {list(OUTPUTS + ASKED_ONLY)}")
    return wanted


def prepare_model(model: SegmentationNet, device: torch.device) -> SegmentationNet:
    """A copy of ``model`` for prediction on ``device``; the original is left as it is.

    The copy is in eval mode, has each BatchNorm folded into the convolution before it and
    channels-last convolution weights: together about 1.5× faster on the CPU (measured here),
    with the same outputs up to float rounding.
    """
    model = copy.deepcopy(model).eval()
    for sequence in model.modules():
        if isinstance(sequence, nn.Sequential):
            for k in range(len(sequence) - 1):
                conv, norm = sequence[k], sequence[k + 1]
                foldable = isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats
                if isinstance(conv, nn.Conv2d) and foldable:
                    sequence[k], sequence[k + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return model.to(device)


def predict_block(
    model: SegmentationNet, block: np.ndarray, outputs: Iterable[str] = OUTPUTS, *, precision: str = "float32"
) -> dict[str, np.ndarray]:
    """One forward pass over a normalised block: a pure function (e.g. for dask ``map_overlap``).

    ``block`` is (Cin, h, w) or (B, Cin, h, w) float32 in 0..1; the model (eval mode, best
    from ``prepare_model``) runs on its own device. Returns float32 arrays with the block's
    leading shape: ``probabilities`` (C, h, w) always, ``filters`` (C, h, w) and ``translated``
    (C, Cin, h, w) for CellPrep models when asked for, ``branch_probabilities`` (S, C, h, w)
    when ``branches`` or ``disagreement`` is asked for and S > 1.
    """
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() before predicting")
    dtype = autocast_dtype(precision)
    wanted = check_outputs(outputs)
    single = block.ndim == 3
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(block[None] if single else block, dtype=np.float32)).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(x)
        result = {"probabilities": torch.softmax(out.ensemble_logits.float(), dim=1)}
        if out.filters is not None and "filters" in wanted:
            result["filters"] = out.filters.float()
        if out.translated is not None and "translated" in wanted:
            result["translated"] = out.translated.float()
        if wanted & {"branches", "disagreement"} and out.branch_logits.shape[1] > 1:
            result["branch_probabilities"] = torch.softmax(out.branch_logits.float(), dim=2)
        arrays = {key: value.cpu().numpy() for key, value in result.items()}
    return {key: value[0] for key, value in arrays.items()} if single else arrays


@dataclass(frozen=True)
class _Axis:
    """The tiling of one image axis."""

    size: int  # image pixels
    padded: int  # rounded up to the model's size multiple
    tile: int
    origins: tuple[int, ...]
    windows: tuple[np.ndarray, ...]  # blending weight of each tile along this axis
    weight_sum: np.ndarray  # (padded,) sum of the windows

    def source(self, k: int, mode: str) -> slice | np.ndarray:
        """Image indices of tile ``k``'s pixels; those in the padding map back by ``mode``."""
        start = self.origins[k]
        if start + self.tile <= self.size:
            return slice(start, start + self.tile)
        index = np.arange(start, start + self.tile)
        outside = 2 * (self.size - 1) - index if mode == "reflect" else self.size - 1
        return np.where(index < self.size, index, outside)


def _effective_tiling(tile: int, overlap: int, multiple: int) -> tuple[int, int]:
    """Tile rounded up and stride rounded down to multiples of ``multiple``: (tile, overlap)."""
    if tile < 1 or overlap < 0:
        raise SettingsError(f"tile must be positive and overlap non-negative, got {tile} and {overlap}")
    tile = -(-tile // multiple) * multiple
    stride = (tile - overlap) // multiple * multiple
    if stride < multiple:
        raise SettingsError(
            f"overlap {overlap} leaves no stride in a tile of {tile} (tiles and strides are multiples of "
            f"{multiple}, the model's size multiple); use a larger tile or a smaller overlap"
        )
    return tile, tile - stride


def _plan_axis(size: int, tile: int, overlap: int, multiple: int) -> _Axis:
    padded = -(-size // multiple) * multiple
    if padded <= tile:
        tile, origins = padded, (0,)
    else:
        origins = (*range(0, padded - tile, tile - overlap), padded - tile)
    centres = np.arange(tile) + 0.5
    quarter = overlap / 4

    def ramp(distance: np.ndarray) -> np.ndarray:
        return np.clip((distance - quarter) / (2 * quarter), 0.0, 1.0) if quarter else np.ones_like(distance)

    windows = []
    weight_sum = np.zeros(padded)
    for origin in origins:
        window = np.ones(tile)
        if origin > 0:
            window *= ramp(centres)
        if origin + tile < padded:
            window *= ramp(tile - centres)
        windows.append(window.astype(np.float32))
        weight_sum[origin : origin + tile] += window
    return _Axis(size, padded, tile, origins, tuple(windows), weight_sum.astype(np.float32))


class _Band:
    """Weighted sums of tile outputs over one band of tile rows; finished rows are written out."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], y: _Axis, x: _Axis) -> None:
        self.y, self.x = y, x
        self.sums = {key: np.zeros(shape + (y.tile, x.padded), np.float32) for key, shape in shapes.items()}

    def add(self, arrays: dict[str, np.ndarray], b: int, i: int, j: int) -> None:
        weight = self.y.windows[i][:, None] * self.x.windows[j][None, :]
        cols = slice(self.x.origins[j], self.x.origins[j] + self.x.tile)
        for key, total in self.sums.items():
            value = arrays[key][b]
            value *= weight
            total[..., cols] += value

    def finish_row(self, i: int) -> tuple[slice, dict[str, np.ndarray]]:
        """Rows no later tile touches, blended; the band then moves down to the next tile row."""
        y, x = self.y, self.x
        top = y.origins[i]
        end = y.origins[i + 1] if i + 1 < len(y.origins) else y.padded
        rows = slice(top, min(end, y.size))
        n = rows.stop - rows.start
        weight = y.weight_sum[rows, None] * x.weight_sum[None, : x.size]
        blended = {key: total[..., :n, : x.size] / weight for key, total in self.sums.items()}
        shift = end - top
        for total in self.sums.values():
            total[..., : y.tile - shift, :] = total[..., shift:, :]
            total[..., y.tile - shift :, :] = 0.0
        return rows, blended


def _store(
    result: dict[str, np.ndarray],
    p: int,
    rows: slice,
    blended: dict[str, np.ndarray],
    fast: tuple[np.ndarray, float] | None = None,
) -> None:
    """Write finished rows of plane ``p``: blended maps, labels, branch labels, disagreement;
    ``fast``: the plane's pixel-classifier probabilities and weight, which join the ensemble."""
    if fast is not None:
        classifier = fast[0][:, rows]
        blended["probabilities"] = blend(blended["probabilities"], classifier, fast[1])
        if "classifier_labels" in result:
            result["classifier_labels"][p, rows] = classifier.argmax(axis=0)
    for key, value in blended.items():
        if key in result:
            result[key][p, ..., rows, :] = value
    probabilities = blended["probabilities"]
    result["labels"][p, rows] = probabilities.argmax(axis=0)
    if "branch_probabilities" in blended:
        branch = blended["branch_probabilities"]
        if "branch_labels" in result:
            result["branch_labels"][p, :, rows] = branch.argmax(axis=1)
        result["disagreement"][p, rows] = 0.5 * np.abs(branch - probabilities).sum(axis=1).mean(axis=0)


def output_shapes(
    config: ModelConfig, wanted: frozenset[str]
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """What tiles contribute (blended maps; the ensemble probabilities always) and what a
    prediction keeps (full-size arrays only for what was asked for): ``{name: shape before
    (H, W)}`` each."""
    c, s = config.num_classes, config.num_outputs
    cellprep = config.architecture == "cellprep"
    blended: dict[str, tuple[int, ...]] = {"probabilities": (c,)}
    if cellprep and "filters" in wanted:
        blended["filters"] = (c,)
    if cellprep and "translated" in wanted:
        blended["translated"] = (c, config.in_channels)
    if wanted & {"branches", "disagreement"} and s > 1:
        blended["branch_probabilities"] = (s, c)
    asked = {"probabilities": "probabilities", "branch_probabilities": "branches"}
    kept = {"labels": ()} | {key: shape for key, shape in blended.items() if asked.get(key, key) in wanted}
    if "branch_probabilities" in blended:
        if "branches" in wanted:
            kept["branch_labels"] = (s,)
        kept["disagreement"] = ()
    return blended, kept


def output_dtype(name: str, num_classes: int) -> np.dtype:
    """Labels are the smallest unsigned type for the class indices; every map is float32."""
    return np.dtype(labels_dtype(num_classes - 1)) if name.endswith("labels") else np.dtype(np.float32)


def _ensemble_weights(model: SegmentationNet) -> np.ndarray:
    if isinstance(model, CellPrepNet):
        with torch.no_grad():
            return model.ensemble_parameters()[0].detach().float().cpu().numpy()
    return np.ones(1, np.float32)


def predict_iter(
    loaded: LoadedModel,
    image: np.ndarray,
    *,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 4,
    outputs: Iterable[str] = OUTPUTS,
    device: str | torch.device | None = None,
    precision: str = "float32",
) -> Generator[Progress, None, Prediction]:
    """Predict ``image`` tile by tile, yielding ``Progress`` after every batch of tiles.

    ``image`` is 2D (Y, X), multi-channel (``channel_axis``) or RGB(A) (``rgb``: napari's flag,
    ``None`` to guess), or a stack of such planes (Z, T, ...), processed plane by plane; uint8,
    uint16 or float (the rules: ``engine.layout``). ``device`` None
    means the model's own device. The model itself is not changed: a ``prepare_model`` copy
    runs. ``precision`` "bfloat16" or "float16" runs the network under autocast, "auto" in what
    ``devices.default_precision`` picks for the device; the prediction records which.
    """
    wanted = check_outputs(outputs)
    if batch_size < 1:
        raise SettingsError(f"batch_size must be at least 1, got {batch_size}")
    target = resolve_device(device) if device is not None else loaded.device
    precision = resolve_precision(precision, target)  # a bad choice fails before any work
    info = loaded.info
    config, normalization = info.config, info.normalization
    planes, lead = to_planes(image, config.in_channels, rgb=rgb, channel_axis=channel_axis)
    report_nonfinite(count_nonfinite(planes), "the image")
    multiple = config.size_multiple
    tile, overlap = _effective_tiling(tile, overlap, multiple)
    height, width = planes.shape[-2:]
    y, x = _plan_axis(height, tile, overlap, multiple), _plan_axis(width, tile, overlap, multiple)
    mode = pad_mode(height, width, multiple)  # as the network pads a whole image

    n = planes.shape[0]
    shapes, kept = output_shapes(config, wanted)
    fast = loaded.classifier
    if fast is not None and "classifier" in wanted:
        kept["classifier_labels"] = ()
    result = {
        key: np.empty((n, *shape, height, width), output_dtype(key, config.num_classes)) for key, shape in kept.items()
    }

    model = prepare_model(loaded.model, target)
    tiles = [(i, j) for i in range(len(y.origins)) for j in range(len(x.origins))]
    batches = [tiles[k : k + batch_size] for k in range(0, len(tiles), batch_size)]
    for p in range(n):
        plane = planes[p]
        stats = channel_stats(plane, normalization)
        band = _Band(shapes, y, x)
        classified = None
        if fast is not None:
            classified = (fast.probabilities(normalize_channels(plane, normalization, stats), device=target), fast.weight)
        for k, batch in enumerate(batches):
            block = np.stack([
                normalize_channels(plane[:, y.source(i, mode)][:, :, x.source(j, mode)], normalization, stats)
                for i, j in batch
            ])
            arrays = predict_block(model, block, wanted, precision=precision)
            for b, (i, j) in enumerate(batch):
                band.add(arrays, b, i, j)
                if j == len(x.origins) - 1:
                    _store(result, p, *band.finish_row(i), classified)
            first = k * batch_size + 1
            where = f"plane {p + 1}/{n}: " if lead else ""
            message = f"{where}tiles {first}–{first + len(batch) - 1} of {len(tiles)}"
            yield Progress(p * len(batches) + k + 1, n * len(batches), message)

    full = {key: value.reshape(lead + value.shape[1:]) for key, value in result.items()}
    return Prediction(
        labels=full["labels"],
        probabilities=full.get("probabilities"),
        filters=full.get("filters"),
        translated=full.get("translated"),
        branch_probabilities=full.get("branch_probabilities"),
        branch_labels=full.get("branch_labels"),
        disagreement=full.get("disagreement"),
        ensemble_weights=_ensemble_weights(model),
        output_names=output_names(config),
        class_names=list(info.class_names),
        device=describe_device(target),
        precision=precision,
        classifier_labels=full.get("classifier_labels"),
        classifier_weight=None if fast is None else fast.weight,
    )


def predict(loaded: LoadedModel, image: np.ndarray, **options: Any) -> Prediction:
    """``predict_iter`` run to the end; the same keyword options."""
    return drive(predict_iter(loaded, image, **options))
