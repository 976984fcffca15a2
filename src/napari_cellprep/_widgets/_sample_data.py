"""Sample data: the NIST phase-contrast tiles shipped in ``napari_cellprep/samples``."""

from __future__ import annotations

from importlib import resources

import numpy as np
import tifffile

SAMPLES = "samples"
CREDIT = (
    "Phase-contrast stem-cell colony tiles, NIST (M. Majurski, usnistgov/semantic-segmentation-unet); "
    "not subject to US copyright"
)


def nist_phase() -> list[tuple[np.ndarray, dict, str]]:
    """The shipped NIST tiles as one Image layer: a stack of tiles (the slider moves between them)."""
    folder = resources.files("napari_cellprep").joinpath(SAMPLES)
    tiles = (
        sorted((f for f in folder.iterdir() if f.name.endswith(".tif")), key=lambda f: f.name)
        if folder.is_dir()
        else []
    )
    if not tiles:
        raise FileNotFoundError(
            f"no sample tiles found in {folder}: this installation of napari-cellprep lacks its "
            f"samples/*.tif files; reinstall the package (pip install --force-reinstall napari-cellprep)"
        )
    images = []
    for tile in tiles:
        with resources.as_file(tile) as path:
            images.append(tifffile.imread(path))
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"the sample tiles have different shapes {sorted(shapes)}; they cannot form one stack"
        )
    names = [tile.name for tile in tiles]
    metadata = {"source": CREDIT, "files": names}
    data = images[0] if len(images) == 1 else np.stack(images)
    return [(data, {"name": f"nist-phase ({len(images)} tiles)", "metadata": metadata}, "image")]
