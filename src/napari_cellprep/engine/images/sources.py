"""Images opened without reading them whole: TIFF memory-mapped or by pages, zarr arrays and
OME-Zarr images (their full-resolution level), with the axes and pixel sizes they carry.

Other formats (PNG, JPEG, ...) are small by nature and are read into memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from ..errors import ImageReadError
from .io import TIFF_SUFFIXES, is_zarr_store, read_image

ZARR_SUFFIX = ".zarr"
COMPLETE_KEY = "cellprep"
"""Root attribute of a store that napari-cellprep writes; ``complete`` turns true last."""


@dataclass
class ImageSource:
    """A lazily read image: ``array`` supports numpy indexing and reads only what it is asked for.

    ``axes`` names every axis (``"y"``, ``"x"``, ``"c"``, ``"z"``, ...; ``None`` if unknown),
    ``scale`` the pixel size along each axis and ``units`` the unit of the named axes.
    """

    array: Any
    name: str
    axes: list[str] | None = None
    scale: list[float] | None = None
    units: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)


def open_image(path: str | os.PathLike) -> ImageSource:
    """Open an image file or zarr store without loading its pixels (TIFF, zarr, OME-Zarr)."""
    path = Path(path)
    if is_zarr_store(path):
        return _open_zarr(path)
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        return _open_tiff(path)
    return ImageSource(read_image(path), path.stem)


def _check_pixels(path: Path, array: Any) -> None:
    if len(array.shape) < 2 or 0 in array.shape:
        raise ImageReadError(f"{path}: holds no 2D image (shape {tuple(array.shape)})")
    if np.dtype(array.dtype).kind not in "buif":
        raise ImageReadError(f"{path}: has pixel type {array.dtype}; expected integer or float intensities")


def _open_tiff(path: Path) -> ImageSource:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = [a.lower() for a in series.axes]
            scale = _tiff_scale(tif, axes)
            unit = {2: "inch", 3: "centimeter"}.get(int(getattr(tif.pages[0], "resolutionunit", 1)))
            _check_complete(tif, path)
        try:
            array: Any = tifffile.memmap(path, mode="r")  # uncompressed and contiguous
        except ValueError:
            array = zarr.open_array(tifffile.imread(path, aszarr=True), mode="r")  # page by page
    except ImageReadError:
        raise
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise ImageReadError(f"{path}: cannot be read as an image ({type(exc).__name__}: {exc})") from exc
    _check_pixels(path, array)
    units = {a: unit for a in ("y", "x") if unit and scale}
    return ImageSource(array, path.stem, axes if len(axes) == array.ndim else None, scale, units)


def _check_complete(tif: tifffile.TiffFile, path: Path) -> None:
    """A TIFF whose pixel data run past its end (a truncated copy) is refused before any work."""
    size = path.stat().st_size
    for page in tif.pages:
        ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts) if count]
        if ends and max(ends) > size:
            raise ImageReadError(
                f"{path}: is truncated (its pixels need {max(ends)} bytes, the file has {size}); copy it again"
            )


def _tiff_scale(tif: tifffile.TiffFile, axes: list[str]) -> list[float] | None:
    """Pixel sizes from the resolution tags (and ImageJ's z spacing), if the file states them."""
    tags = tif.pages[0].tags
    if "XResolution" not in tags or "YResolution" not in tags or "y" not in axes or "x" not in axes:
        return None
    sizes = {}
    for axis in ("x", "y"):
        numerator, denominator = tags[f"{axis.upper()}Resolution"].value
        sizes[axis] = denominator / numerator if numerator else 1.0
    if tif.imagej_metadata and "spacing" in tif.imagej_metadata:
        sizes["z"] = float(tif.imagej_metadata["spacing"])
    return [sizes.get(axis, 1.0) for axis in axes]


def _open_zarr(path: Path) -> ImageSource:
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:  # zarr raises many types for a damaged store
        raise ImageReadError(f"{path}: cannot be opened as a zarr store ({type(exc).__name__}: {exc})") from exc
    attrs = dict(node.attrs)
    if attrs.get(COMPLETE_KEY, {}).get("complete") is False:
        raise ImageReadError(
            f"{path}: is an unfinished napari-cellprep output; finish it with `cellprep predict ... --resume`"
        )
    if isinstance(node, zarr.Array):
        _check_pixels(path, node)
        names = node.metadata.dimension_names if hasattr(node.metadata, "dimension_names") else None
        return ImageSource(node, path.stem, list(names) if names and all(names) else None)
    try:
        multiscales = attrs.get("ome", attrs).get("multiscales")
        if multiscales:
            return _open_multiscale(path, node, multiscales[0])
    except ImageReadError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise ImageReadError(
            f"{path}: its OME-Zarr metadata (multiscales) does not describe a readable image "
            f"({type(exc).__name__}: {exc}); fix the metadata or give the array's own path"
        ) from exc
    arrays = sorted(name for name, _ in node.arrays())
    if len(arrays) != 1:
        raise ImageReadError(
            f"{path}: a zarr group without OME-Zarr metadata must hold one array, found {arrays or 'none'}; "
            f"give the array's own path (e.g. {path / (arrays[0] if arrays else 'image')})"
        )
    return _open_zarr(path / arrays[0])


def _open_multiscale(path: Path, group: zarr.Group, multiscale: Any) -> ImageSource:
    """The full-resolution level of an OME-Zarr multiscale image, with its axes and scale."""
    dataset = multiscale["datasets"][0]
    array = group[dataset["path"]]
    if not isinstance(array, zarr.Array):
        raise TypeError(f"{dataset['path']} is a group")
    _check_pixels(path, array)
    axes = [a["name"] if isinstance(a, dict) else a for a in multiscale.get("axes", [])] or None
    units = {a["name"]: a["unit"] for a in multiscale.get("axes", []) if isinstance(a, dict) and "unit" in a}
    scale = None
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = [float(s) for s in transform["scale"]]
    return ImageSource(array, path.stem, axes, scale, units)
