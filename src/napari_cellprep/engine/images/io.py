"""Image files: TIFF through tifffile, PNG/JPEG/... through imageio (scikit-image's reader).

Every failure is an ``ImageReadError`` that names the file and the problem; writing is atomic
and never replaces an existing file unless asked.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from ..errors import CellprepError, ImageReadError, OutputError, OutputExistsError

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


def _read(path: Path, *, palette_indices: bool = False) -> np.ndarray:
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        if _is_tiff(path):
            array = tifffile.imread(path)
        elif palette_indices and iio.immeta(path).get("mode") == "P":
            array = iio.imread(path, mode="P")  # keep the indices, not the palette's colours
        else:
            array = iio.imread(path)
    except Exception as exc:  # the readers raise many types for a damaged or foreign file
        raise ImageReadError(f"{path}: cannot be read as an image ({type(exc).__name__}: {exc})") from exc
    array = np.asarray(array)
    if array.ndim < 2 or array.size == 0:
        raise ImageReadError(f"{path}: holds no 2D image (shape {array.shape})")
    if array.dtype.kind not in "buif":
        raise ImageReadError(f"{path}: has pixel type {array.dtype}; expected integer or float intensities")
    return array


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixel array of an image file, as stored (e.g. (Y, X), (Z, Y, X) or (Y, X, RGB))."""
    return _read(Path(path))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A 2D mask of integer class indices (palette PNGs give their indices, not colours).

    A grayscale PNG/JPEG/... saved as RGB(A) with equal colour channels is accepted as its
    first channel.
    """
    path = Path(path)
    mask = _read(path, palette_indices=True)
    if not _is_tiff(path) and mask.ndim == 3 and mask.shape[-1] in (3, 4):
        rgb = mask[..., :3]
        if (rgb == rgb[..., :1]).all():
            mask = rgb[..., 0]
    if mask.ndim != 2:
        raise ImageReadError(
            f"{path}: a mask must be a 2D image of class indices, got shape {mask.shape} "
            f"(colour masks are not class indices: save one channel, values 0..C-1)"
        )
    if mask.dtype.kind not in "bui":
        raise ImageReadError(f"{path}: a mask must hold integer class indices, got pixel type {mask.dtype}")
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` once the block succeeds.

    The file appears complete or not at all; on failure the temporary file is removed. An
    existing ``path`` is kept unless ``overwrite`` is true (``OutputExistsError``); a file that
    cannot be written raises ``OutputError``. The temporary name keeps the suffix.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; choose another place or allow overwriting")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch(exist_ok=False)  # created with the user's usual permissions (umask) ...
        mode = stat.S_IMODE(tmp.stat().st_mode)
        yield tmp
        os.chmod(tmp, mode)  # ... which some writers narrow (safetensors makes files private)
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):  # e.g. the folder could not be made: there is nothing to remove
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, CellprepError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def write_image(path: str | os.PathLike, array: np.ndarray, overwrite: bool = False) -> Path:
    """Write ``array`` to ``path`` (TIFF for .tif/.tiff, else by extension), atomically.

    Arrays go to TIFF as they are (grayscale pages, zlib-compressed). An existing file is kept
    unless ``overwrite`` is true.
    """
    path = Path(path)
    with atomic_write(path, overwrite) as tmp:
        if _is_tiff(path):
            tifffile.imwrite(tmp, np.asarray(array), photometric="minisblack", compression="zlib")
        else:
            iio.imwrite(tmp, np.asarray(array), extension=path.suffix)
    return path


def keep_apart(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse (``OutputError``) an output that is, contains or lies inside an input (symbolic
    links followed): checked before any work, so no run can overwrite or delete what it reads."""
    given = [(Path(p), Path(p).resolve()) for p in inputs if p is not None]
    for output in map(Path, outputs):
        out = output.resolve()
        for name, path in given:
            how = "is" if out == path else "lies inside" if out.is_relative_to(path) else (
                "contains" if path.is_relative_to(out) else None)
            if how:
                raise OutputError(
                    f"the output {output} {how} the input {name}; the run would overwrite what it reads: "
                    f"choose another output"
                )


def check_writable(path: str | os.PathLike) -> None:
    """Refuse (``OutputError``) an output file whose folder cannot be written, before any work
    (the folder need not exist yet: its nearest existing parent is tried)."""
    path = Path(path)
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists() or p == Path(p.anchor or "."))
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {folder}: {exc.strerror or exc}") from exc


def is_zarr_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr store (v2 or v3) rather than a plain folder."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup"))


def list_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files among ``paths``: files and zarr stores as given, folders expanded to their
    images and zarr stores (sorted).

    Hidden files and files of other types inside folders are skipped.
    """
    found: list[Path] = []
    for entry in map(Path, paths):
        if is_zarr_store(entry):
            found.append(entry)
        elif entry.is_dir():
            images = _images_in(entry)
            if not images:
                raise ImageReadError(f"{entry}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(images)
        elif entry.is_file():
            found.append(entry)
        else:
            raise ImageReadError(f"{entry}: no such file or folder")
    return found


def _images_in(folder: Path, stores: bool = True) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".")
        and ((p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) or (stores and is_zarr_store(p)))
    )


def sample_paths() -> list[Path]:
    """The sample tiles shipped with the package (``napari_cellprep/samples``), sorted by name."""
    folder = Path(str(resources.files("napari_cellprep").joinpath("samples")))
    return _images_in(folder, stores=False) if folder.is_dir() else []


def find_pairs(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(image, mask) file pairs: every image in ``images_dir`` with the mask of the same stem.

    Masks without an image are ignored; an image without a mask, or a stem that names two
    files in one folder, is an error.
    """
    folders = {"image": Path(images_dir), "mask": Path(masks_dir)}
    by_stem: dict[str, dict[str, Path]] = {}
    for kind, folder in folders.items():
        if not folder.is_dir():
            raise ImageReadError(f"{folder}: no such {kind} folder")
        stems: dict[str, Path] = {}
        for path in _images_in(folder, stores=False):
            if path.stem in stems:
                raise ImageReadError(
                    f"{folder}: {stems[path.stem].name} and {path.name} have the same stem; keep one"
                )
            stems[path.stem] = path
        by_stem[kind] = stems
    images, masks = by_stem["image"], by_stem["mask"]
    if not images:
        raise ImageReadError(f"{images_dir}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    unmatched = [images[stem].name for stem in images if stem not in masks]
    if unmatched:
        shown = ", ".join(unmatched[:3]) + (f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else "")
        raise ImageReadError(
            f"no mask in {masks_dir} for {shown}: masks are matched to images by file name without extension"
        )
    return [(images[stem], masks[stem]) for stem in images]
