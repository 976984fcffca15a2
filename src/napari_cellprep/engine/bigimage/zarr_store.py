"""The zarr store a prediction writes block by block, and how it shows what is finished.

Layout (zarr v3): the class-index labels at ``labels``, each requested intermediate at its own
path (``probabilities``, ``filters``, ...), one group per image when there are several (named
by the image's file stem), and ``done``: one byte per block, set after that block's outputs
are written. A store is complete only once its root attribute ``cellprep.complete`` is true,
which is written last; each image group gets its OME-Zarr metadata (its ``labels`` as the one
level of a multiscale image, with the input's axes and pixel sizes) when its last block is
done, so OME-Zarr readers never take an unfinished image for a finished one.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import OutputError, OutputExistsError
from ..images.io import is_zarr_store
from ..images.sources import COMPLETE_KEY

DONE = "done"
AXIS_NAMES = {"probabilities": ("class",), "filters": ("class",), "translated": ("class", "channel"),
              "branch_probabilities": ("branch", "class"), "branch_labels": ("branch",)}
"""Names of the axes an output has between the plane axes and (y, x)."""
OME_AXES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def prepare_store(path: Path, settings: dict[str, Any], *, resume: bool, overwrite: bool) -> zarr.Group:
    """The root group of a new store, or of the unfinished one to ``resume`` (same settings only).

    An existing store is replaced only with ``overwrite``; anything at ``path`` that is not a zarr
    store is never removed.
    """
    if path.exists() and resume and is_zarr_store(path):
        root = zarr.open_group(path, mode="r+")
        previous = dict(root.attrs).get(COMPLETE_KEY, {})
        before = previous.get("settings") or {}
        if before != settings:
            changed = ", ".join(sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k)))
            raise OutputExistsError(
                f"{path} was written with other settings ({changed}); resume with the same command "
                f"(and options), or use --overwrite or another --out"
            )
        _unfinish(root, {"complete": False, "settings": settings})
        return root
    if path.exists():
        if not overwrite:
            raise OutputExistsError(f"{path} already exists; use --resume to finish it, --overwrite to replace it")
        if not is_zarr_store(path):
            raise OutputError(f"{path} exists and is not a zarr store; it is not removed: choose another --out")
        shutil.rmtree(path)
    try:
        root = zarr.open_group(path, mode="w-")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    root.attrs[COMPLETE_KEY] = {"complete": False, "settings": settings}
    return root


def create_image(
    root: zarr.Group,
    group: str,
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, np.dtype],
    lead: tuple[int, ...],
    size: tuple[int, int],
    block: int,
    blocks: tuple[int, int],
    lead_names: Sequence[str],
) -> zarr.Group:
    """Empty output arrays of one image (chunks: one block of one plane), unless they exist."""
    node = root.require_group(group) if group else root
    if group:
        _unfinish(node, {"complete": False})
    planes = int(np.prod(lead)) if lead else 1
    for name, shape in shapes.items():
        if name in node:
            continue
        chunks = (1,) * len(lead) + shape + (min(block, size[0]), min(block, size[1]))
        node.create_array(
            name,
            shape=lead + shape + size,
            chunks=chunks,
            dtype=dtypes[name],
            fill_value=0,
            dimension_names=[*lead_names, *AXIS_NAMES.get(name, ()), "y", "x"],
        )
    if DONE not in node:
        node.create_array(DONE, shape=(planes, *blocks), chunks=(1, 1, 1), dtype="uint8", fill_value=0)
    return node


def _unfinish(node: zarr.Group, marker: dict[str, Any]) -> None:
    """Mark a group unfinished (again): no completion flag, no OME-Zarr metadata until done."""
    node.attrs[COMPLETE_KEY] = marker
    if "ome" in node.attrs:
        del node.attrs["ome"]


def write_block(
    store: str, group: str, lead: tuple[int, ...], index: tuple[int, int, int], region: tuple[slice, slice],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write block ``index`` (plane, by, bx) of an image, then mark it done (a crash in between
    leaves it undone; each block owns whole chunks, so blocks can be written in parallel)."""
    node = zarr.open_group(store, mode="r+", path=group or None)
    p = index[0]
    plane = tuple(int(k) for k in np.unravel_index(p, lead)) if lead else ()
    for name, value in arrays.items():
        node[name][plane + (Ellipsis, *region)] = value
    node[DONE][index] = 1


def done_blocks(node: zarr.Group) -> np.ndarray:
    """(planes, blocks Y, blocks X) booleans: which blocks are written."""
    return node[DONE][...].astype(bool)


def finish_image(node: zarr.Group, axes: Sequence[str] | None, scale: Sequence[float] | None, units: dict) -> None:
    """Give an image group OME-Zarr metadata where its axes allow, then mark it complete."""
    if axes is not None and set(axes) <= set(OME_AXES) and len(set(axes)) == len(axes) and len(axes) <= 5:
        _write_ome(node, axes, scale, units)
    attrs = dict(node.attrs.get(COMPLETE_KEY, {}))
    attrs["complete"] = True
    node.attrs[COMPLETE_KEY] = attrs


def _write_ome(node: zarr.Group, axes: Sequence[str], scale: Sequence[float] | None, units: dict) -> None:
    """``labels`` as the one level of an OME-Zarr multiscale image (ome-zarr checks the axes)."""
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import write_multiscales_metadata

    described = [{"name": a, "type": OME_AXES[a]} | ({"unit": units[a]} if a in units else {}) for a in axes]
    transform = [{"type": "scale", "scale": [float(s) for s in (scale or [1.0] * len(axes))]}]
    try:
        write_multiscales_metadata(
            node, [{"path": "labels", "coordinateTransformations": transform}], CurrentFormat(), described
        )
    except ValueError:  # an axis order OME-Zarr does not allow (e.g. z before t): plain zarr then
        pass


def finish_store(root: zarr.Group) -> None:
    """The last write of a run: the store is complete."""
    attrs = dict(root.attrs[COMPLETE_KEY])
    attrs["complete"] = True
    root.attrs[COMPLETE_KEY] = attrs
