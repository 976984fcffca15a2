"""The zarr store a prediction writes block by block, and how it shows what is finished.

Layout (zarr v3): the class-index labels at ``labels``, each requested intermediate at its own
path (``probabilities``, ``filters``, ...), one group per image when there are several (named
by the image's file stem), and ``done``: one marker per block, written after that block's
outputs: a checksum of what was written (never 0; 0 = not done). Every chunk and marker is
written atomically (zarr's local store writes a temporary file, then renames it), so a kill
leaves each one old or new. ``--resume`` trusts a block only if its marker and data read back
and the data match the checksum; any other block is computed again.
A store is complete only once its root attribute ``cellprep.complete`` is true,
which is written last; each image group gets its OME-Zarr metadata (its ``labels`` as the one
level of a multiscale image, with the input's axes and pixel sizes) when its last block is
done, so OME-Zarr readers never take an unfinished image for a finished one.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import CellprepError, OutputError, OutputExistsError
from ..images.io import is_zarr_store
from ..images.sources import COMPLETE_KEY

DONE = "done"
MARKER_DTYPE = np.dtype("uint64")
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


@contextmanager
def damage_reported(path: Path) -> Iterator[None]:
    """Opening a store to write or resume: metadata that cannot be read ends in one line."""
    try:
        yield
    except CellprepError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # zarr's many types for damaged metadata
        raise OutputError(
            f"{path} is damaged beyond what --resume repairs ({type(exc).__name__}: {exc}); replace it with "
            f"--overwrite, or choose another --out"
        ) from exc


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
    if DONE in node and node[DONE].dtype != MARKER_DTYPE:  # a store of an older version: checked anew
        del node[DONE]
    if DONE not in node:
        node.create_array(DONE, shape=(planes, *blocks), chunks=(1, 1, 1), dtype=MARKER_DTYPE, fill_value=0)
    return node


def _unfinish(node: zarr.Group, marker: dict[str, Any]) -> None:
    """Mark a group unfinished (again): no completion flag, no OME-Zarr metadata until done."""
    node.attrs[COMPLETE_KEY] = marker
    if "ome" in node.attrs:
        del node.attrs["ome"]


def _selection(lead: tuple[int, ...], index: tuple[int, int, int], region: tuple[slice, slice]) -> tuple:
    plane = tuple(int(k) for k in np.unravel_index(index[0], lead)) if lead else ()
    return plane + (Ellipsis, *region)


def checksum(arrays: dict[str, np.ndarray]) -> int:
    """A block's marker: a 64-bit hash of its outputs (names, types, shapes, pixels), never 0."""
    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.data)
    return int.from_bytes(digest.digest(), "little") or 1


def write_block(
    store: str, group: str, lead: tuple[int, ...], index: tuple[int, int, int], region: tuple[slice, slice],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write block ``index`` (plane, by, bx) of an image, then its marker, the checksum of what was
    written (a crash in between leaves it undone; each block owns whole chunks, so blocks can be
    written in parallel)."""
    node = zarr.open_group(store, mode="r+", path=group or None)
    where = _selection(lead, index, region)
    stored = {name: np.asarray(value, dtype=node[name].dtype) for name, value in arrays.items()}
    for name, value in stored.items():
        node[name][where] = value
    node[DONE][index] = checksum(stored)


def verified_blocks(
    node: zarr.Group, names: Sequence[str], lead: tuple[int, ...], region: Callable[[int, int], tuple[slice, slice]]
) -> np.ndarray:
    """(planes, blocks Y, blocks X) booleans: the blocks whose marker and outputs ``names`` read
    back and match (``region(by, bx)``: a block's pixels). Anything unreadable counts as not done."""
    try:
        markers = node[DONE][...]
    except Exception:  # a damaged marker chunk: read them one by one
        markers = np.zeros(node[DONE].shape, MARKER_DTYPE)
        for index in np.ndindex(markers.shape):
            with suppress(Exception):
                markers[index] = node[DONE][index]
    verified = np.zeros(markers.shape, bool)
    for index in map(tuple, np.argwhere(markers != 0)):
        where = _selection(lead, index, region(*index[1:]))
        try:
            arrays = {name: node[name][where] for name in names}
        except Exception:  # zarr and its codecs raise many types for a damaged chunk
            continue
        verified[index] = checksum(arrays) == int(markers[index])
    return verified


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
