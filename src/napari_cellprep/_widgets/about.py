"""What every dock shows about the plugin itself: its version."""

from __future__ import annotations

from magicgui.widgets import Label

from .. import __version__


def version_text() -> str:
    """``napari-cellprep <version>``, as the docks show it."""
    return f"napari-cellprep {__version__}"


def version_label() -> Label:
    """A small grey label with the plugin's version."""
    label = Label(value=version_text())
    label.tooltip = f"{version_text()}: Kato & Hotta's learned preprocessing and ensemble (CellPrep)"
    label.native.setStyleSheet("color: gray; font-size: small;")
    return label
