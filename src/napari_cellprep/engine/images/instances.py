"""Objects from a class map, and a measurements table per object.

``find_instances``: each connected region (8-connected) of an object class is one object. With a
boundary class (a class named like ``BOUNDARY_WORDS`` in the checkpoint, or chosen), the regions
between boundaries are the seeds of a watershed on the distance to them, so each boundary pixel
joins the nearest object it touches through the boundary. Objects below ``min_size`` pixels are
dropped and the rest numbered 1..N. A stack is done plane by plane, numbered on through the stack.

``measure_instances``: one row per object from scikit-image's ``regionprops_table`` (its column
names), with the object's class, the input's intensities and the mean branch disagreement.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected_components
from skimage.measure import regionprops_table
from skimage.segmentation import relabel_sequential, watershed

from ..errors import LabelError, SettingsError
from .io import atomic_write

BOUNDARY_WORDS = ("boundary", "border", "contour", "edge", "membrane")
"""A class whose name holds one of these words is the boundary class when none is chosen."""

AUTO = "auto"
ClassChoice = int | str | None

PROPERTIES = ("label", "area", "centroid", "bbox", "intensity_mean", "intensity_min", "intensity_max")


@dataclass
class Instances:
    """Object labels (0 = no object, 1..N) and the class index of object i at ``classes[i - 1]``."""

    labels: np.ndarray  # (*lead, H, W) int32
    classes: np.ndarray  # (N,) class indices
    class_names: list[str]


def class_index(choice: int | str, class_names: Sequence[str]) -> int:
    """A class given by index or name, checked."""
    if isinstance(choice, str) and choice in class_names:
        return list(class_names).index(choice)
    if isinstance(choice, (int, np.integer)) and 0 <= choice < len(class_names):
        return int(choice)
    raise SettingsError(
        f"{choice!r} is not a class of this model; choose an index 0..{len(class_names) - 1} or one of "
        f"{', '.join(map(repr, class_names))}"
    )


def find_boundary_class(class_names: Sequence[str], choice: ClassChoice = AUTO) -> int | None:
    """The boundary class: ``choice`` (index or name; ``None``: no boundary), or with ``"auto"``
    the first class whose name holds a word of ``BOUNDARY_WORDS``."""
    if choice is None:
        return None
    if choice == AUTO:
        words = [set(name.lower().replace("-", " ").replace("_", " ").split()) for name in class_names]
        return next((k for k, w in enumerate(words) if w & set(BOUNDARY_WORDS)), None)
    return class_index(choice, class_names)


def object_classes(num_classes: int, boundary: int | None) -> list[int]:
    """The classes whose regions are objects: all but class 0 (background) and the boundary; with
    a boundary and two classes, the other class (e.g. cell interiors between membranes)."""
    classes = [k for k in range(1, num_classes) if k != boundary]
    return classes or [k for k in range(num_classes) if k != boundary]


def _plane_instances(labels: np.ndarray, classes: list[int], boundary: int | None, min_size: int):
    seeds = np.zeros(labels.shape, np.int32)
    seed_class = [0]
    for k in classes:
        regions, n = connected_components(labels == k, connectivity=2, return_num=True)
        seeds[regions > 0] = regions[regions > 0] + len(seed_class) - 1
        seed_class += [k] * n
    objects = seeds
    if boundary is not None and len(seed_class) > 1:
        grow = (seeds > 0) | (labels == boundary)
        objects = watershed(ndi.distance_transform_edt(seeds == 0), seeds, mask=grow)
    sizes = np.bincount(objects.ravel(), minlength=len(seed_class))
    objects[np.isin(objects, np.flatnonzero(sizes < max(min_size, 1)))] = 0
    kept = np.unique(objects)
    kept = kept[kept > 0]  # relabel_sequential keeps their order: new label i is kept[i - 1]
    return relabel_sequential(objects)[0].astype(np.int32), np.asarray(seed_class)[kept]


def find_instances(
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    boundary_class: ClassChoice = AUTO,
    objects: Sequence[int | str] | None = None,
    min_size: int = 0,
) -> Instances:
    """Objects of a class-index map (*lead, H, W) (see the module); ``objects`` chooses the object
    classes (default ``object_classes``)."""
    if min_size < 0:
        raise SettingsError(f"the minimum object size must be at least 0 pixels, got {min_size}")
    boundary = find_boundary_class(class_names, boundary_class)
    chosen = (
        [class_index(k, class_names) for k in objects]
        if objects is not None
        else object_classes(len(class_names), boundary)
    )
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.int32)
    classes: list[np.ndarray] = []
    for index in np.ndindex(labels.shape[:-2]):
        plane, plane_classes = _plane_instances(labels[index], chosen, boundary, min_size)
        offset = sum(len(c) for c in classes)
        out[index] = np.where(plane > 0, plane + offset, 0)
        classes.append(plane_classes)
    return Instances(out, np.concatenate(classes).astype(np.int64), list(class_names))


def _intensity(image: np.ndarray, shape: tuple[int, ...], rgb: bool | None, channel_axis: int | None):
    """The input as (*lead, H, W) or (*lead, H, W, channels) over labels of ``shape``."""
    image = np.asarray(image)
    if channel_axis is not None:
        image = np.moveaxis(image, channel_axis, -1)
    elif image.shape != shape and rgb is not False and image.shape[-1] in (3, 4):
        image = image[..., :3]
    if image.shape[: len(shape)] != shape or image.ndim > len(shape) + 1:
        raise LabelError(f"an image of shape {image.shape} does not cover objects of shape {shape}")
    return image


def measure_instances(
    instances: Instances,
    image: np.ndarray,
    disagreement: np.ndarray | None = None,
    *,
    rgb: bool | None = None,
    channel_axis: int | None = None,
) -> dict[str, np.ndarray]:
    """The measurements table, one row per object, as columns: ``label``, ``class``,
    ``class_index``, the plane (``plane-0``… in a stack), ``area``, ``centroid-0/1``,
    ``bbox-0..3``, ``intensity_mean/min/max`` of ``image`` (``-c`` per channel) and, with
    ``disagreement``, ``disagreement`` (its mean inside the object) and ``confidence`` (1 − it).
    """
    labels = instances.labels
    intensity = _intensity(image, labels.shape, rgb, channel_axis)
    rows: list[dict[str, np.ndarray]] = []
    lead = labels.shape[:-2]
    for index in np.ndindex(lead):
        table = regionprops_table(labels[index], intensity[index], properties=PROPERTIES)
        if disagreement is not None:
            mean = regionprops_table(labels[index], disagreement[index], properties=("intensity_mean",))
            table["disagreement"] = mean["intensity_mean"]
            table["confidence"] = 1.0 - mean["intensity_mean"]
        planes = {f"plane-{axis}": np.full(len(table["label"]), i) for axis, i in enumerate(index)}
        rows.append({"label": table.pop("label"), **planes, **table})
    columns = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    kinds = instances.classes[columns["label"] - 1]
    names = np.asarray(instances.class_names, dtype=object)[kinds]
    return {"label": columns.pop("label"), "class": names, "class_index": kinds, **columns}


def write_measurements(
    path: str | os.PathLike, table: dict[str, np.ndarray], overwrite: bool = False
) -> Path:
    """Write the table as CSV (a header row, then one row per object), atomically."""
    with atomic_write(path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(table)
        writer.writerows(zip(*(np.asarray(column).tolist() for column in table.values())))
    return Path(path)
