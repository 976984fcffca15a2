"""Sample data: the NIST phase-contrast tiles shipped in ``napari_cellprep/samples``."""

from __future__ import annotations

import numpy as np

from ..engine.images.io import read_image, sample_paths

CREDIT = (
    "Phase-contrast stem-cell colony tiles, NIST (M. Majurski, usnistgov/semantic-segmentation-unet); "
    "not subject to US copyright"
)


def nist_phase() -> list[tuple[np.ndarray, dict, str]]:
    """The shipped NIST tiles as one Image layer: a stack of tiles (the slider moves between them)."""
    tiles = sample_paths()
    if not tiles:
        raise FileNotFoundError(
            "no sample tiles found: this installation of napari-cellprep lacks its samples/*.tif "
            "files; reinstall the package (pip install --force-reinstall napari-cellprep)"
        )
    images = [read_image(tile) for tile in tiles]
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"the sample tiles have different shapes {sorted(shapes)}; they cannot form one stack"
        )
    names = [tile.name for tile in tiles]
    metadata = {"source": CREDIT, "files": names}
    data = images[0] if len(images) == 1 else np.stack(images)
    return [(data, {"name": f"nist-phase ({len(images)} tiles)", "metadata": metadata}, "image")]
