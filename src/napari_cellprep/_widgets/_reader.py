"""Reader: a CellPrep checkpoint (*.cellprep) dropped on napari opens in the Segment widget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..engine.checkpoint import SUFFIX, CheckpointError, read_info
from .registry import get_registry

PLUGIN = "napari-cellprep"


def get_reader(path: str | list[str]) -> Callable | None:
    """``read_checkpoints`` if every path is a napari-cellprep checkpoint, else ``None``."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        return None
    for p in paths:
        if not str(p).endswith(SUFFIX):
            return None
        try:
            read_info(p)
        except CheckpointError:
            return None
    return read_checkpoints


def read_checkpoints(path: str | list[str]) -> list[tuple[None]]:
    """Register the models, open the Segment widget with the last one chosen; no layers."""
    import napari

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    entries = [get_registry().add_file(p) for p in paths]
    viewer = napari.current_viewer()
    if viewer is not None:
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
        dock.show()
        widget.select_model(entries[-1])
    return [(None,)]
