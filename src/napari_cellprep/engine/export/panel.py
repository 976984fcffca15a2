"""The demo: a one-figure view of everything the model computed on an image."""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..checkpoint import default_colors
from ..images.io import atomic_write
from ..prediction.inference import Prediction

PANEL_COLUMNS = 5


def _displayable(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4)):
        return image
    raise ValueError(f"make_panel draws a 2D grayscale or RGB(A) image, got shape {image.shape}")


def _translated_view(translated: np.ndarray) -> np.ndarray:
    """One translated image (Cin, H, W) in 0..1 as something imshow draws."""
    return translated[0] if translated.shape[0] == 1 else np.moveaxis(translated[:3], 0, -1)


def make_panel(
    prediction: Prediction,
    image: np.ndarray,
    path: str | os.PathLike,
    *,
    class_colors: list[str] | None = None,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """Write one PNG figure: input, each filter, each translated image, each branch's labels,
    the ensemble labels and the branch disagreement, titled with the ensemble weights.

    ``prediction`` must hold one 2D image's outputs (``predict`` with all ``OUTPUTS``); panels
    whose output is absent (plain U-Net: no filters) are left out. Written atomically; an
    existing file is kept unless ``overwrite`` is true.
    """
    labels = prediction.labels
    if labels.ndim != 2:
        raise ValueError(f"make_panel draws one 2D image; the prediction's labels have shape {labels.shape}")
    names = prediction.class_names
    colors = class_colors or default_colors(len(names))
    label_style = {
        "cmap": ListedColormap(colors),
        "vmin": -0.5,
        "vmax": len(names) - 0.5,
        "interpolation": "nearest",
    }
    panels: list[tuple[str, np.ndarray, dict, bool]] = [
        ("input", _displayable(image), {"cmap": "gray"}, False)
    ]
    if prediction.filters is not None:
        panels += [
            (f"filter {k + 1}", prediction.filters[k], {"cmap": "viridis"}, True)
            for k in range(len(names))
        ]
    if prediction.translated is not None:  # one grey scale for all, so they compare
        shared = {
            "cmap": "gray",
            "vmin": float(prediction.translated.min()),
            "vmax": float(prediction.translated.max()),
        }
        panels += [
            (f"translated t{k + 1}", _translated_view(prediction.translated[k]), shared, False)
            for k in range(len(names))
        ]
    if prediction.branch_labels is not None:
        panels += [
            (f"labels: {output}", prediction.branch_labels[s], label_style, False)
            for s, output in enumerate(prediction.output_names)
        ]
    panels.append(("labels: ensemble", labels, label_style, False))
    if prediction.disagreement is not None:
        panels.append(
            ("branch disagreement", prediction.disagreement, {"cmap": "magma", "vmin": 0, "vmax": 1}, True)
        )

    columns = min(len(panels), PANEL_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(3.2 * columns, 3.3 * rows + 1.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, array, style, colorbar) in zip(axes, panels):
        shown = ax.imshow(array, **style)
        ax.set_title("\n".join(textwrap.wrap(name, 36)), fontsize=9)
        if colorbar:
            figure.colorbar(shown, ax=ax, shrink=0.8)
    for ax in axes:
        ax.set_axis_off()
    weights = ", ".join(
        f"{output} {w:.3g}" for output, w in zip(prediction.output_names, prediction.ensemble_weights)
    )
    heading = "\n".join(filter(None, [title, textwrap.fill(f"ensemble weights: {weights}", 140)]))
    figure.suptitle(heading, fontsize=10)
    figure.legend(
        handles=[Patch(facecolor=c, edgecolor="gray", label=n) for c, n in zip(colors, names)],
        loc="outside lower center",
        ncols=len(names),
        fontsize=9,
    )
    with atomic_write(path, overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(path)
