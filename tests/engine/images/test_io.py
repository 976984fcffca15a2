"""Image and mask files: reading, atomic no-clobber writing, folder pairing."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_cellprep.engine.images import io
from napari_cellprep.engine.images.io import (
    ImageReadError,
    find_pairs,
    list_images,
    read_image,
    read_mask,
    write_image,
)


def test_tiff_and_png_round_trip(tmp_path):
    stack = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9) * 50
    rgb = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    write_image(tmp_path / "stack.tif", stack)
    write_image(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "stack.tif"), stack)
    assert read_image(tmp_path / "stack.tif").dtype == np.uint16
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)


def test_read_mask_keeps_palette_indices_and_flattens_gray_rgb(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "palette.png"), indices)
    Image.fromarray(np.repeat(indices[..., None], 3, axis=2)).save(tmp_path / "gray_rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "gray_rgb.png"), indices)


def test_read_mask_rejects_float_colour_and_stacks(tmp_path):
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((4, 4), np.float32))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 4, 4), np.uint8))
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ImageReadError, match="integer class indices"):
        read_mask(tmp_path / "float.tif")
    for name in ("stack.tif", "colour.png"):
        with pytest.raises(ImageReadError, match="must be a 2D image of class indices"):
            read_mask(tmp_path / name)


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "notes.tif").write_text("not an image")
    (tmp_path / "notes.png").write_bytes(b"\x89PNG broken")
    for name in ("notes.tif", "notes.png"):
        with pytest.raises(ImageReadError, match=f"{name}: cannot be read as an image"):
            read_image(tmp_path / name)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "absent.tif")


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "labels.tif"
    write_image(path, np.ones((4, 4), np.uint8))
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # usual permissions, not private
    with pytest.raises(FileExistsError, match="already exists"):
        write_image(path, np.zeros((4, 4), np.uint8))
    np.testing.assert_array_equal(read_image(path), 1)
    write_image(path, np.full((4, 4), 2, np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_image(path), 2)


def test_failed_write_leaves_original_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "labels.tif"
    write_image(path, np.ones((4, 4), np.uint8))

    def half_written(file, data, **kwargs):
        with open(file, "wb") as fh:
            fh.write(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(io.tifffile, "imwrite", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_image(path, np.zeros((4, 4), np.uint8), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]
    np.testing.assert_array_equal(tifffile.imread(path), 1)


def test_find_pairs_matches_by_stem(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in ("b", "a"):
        (images / f"{stem}.tif").touch()
        (masks / f"{stem}.png").touch()
    (masks / "extra.png").touch()
    (images / ".hidden.tif").touch()
    (images / "readme.txt").touch()
    assert find_pairs(images, masks) == [
        (images / "a.tif", masks / "a.png"),
        (images / "b.tif", masks / "b.png"),
    ]
    (images / "c.tif").touch()
    with pytest.raises(ImageReadError, match="no mask in .* for c.tif"):
        find_pairs(images, masks)
    (masks / "c.png").touch()
    (masks / "c.tif").touch()
    with pytest.raises(ImageReadError, match="c.png and c.tif have the same stem"):
        find_pairs(images, masks)
    with pytest.raises(ImageReadError, match="no such mask folder"):
        find_pairs(images, tmp_path / "absent")


def test_list_images_expands_folders(tmp_path):
    (tmp_path / "b.png").touch()
    (tmp_path / "a.tif").touch()
    (tmp_path / "notes.txt").touch()
    single = tmp_path / "notes.txt"
    assert list_images([tmp_path, single]) == [tmp_path / "a.tif", tmp_path / "b.png", single]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageReadError, match="folder holds no images"):
        list_images([empty])
    with pytest.raises(ImageReadError, match="no such file or folder"):
        list_images([tmp_path / "absent.tif"])
