"""Insert layers without making each one the active layer (napari rebuilds its layer controls on
every change of the active layer: a freeze of a tenth of a second or more per layer)."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager


@contextmanager
def quiet_insert(layer_list) -> Generator[None, None, None]:
    """Within the block, inserted layers do not become active (napari's ``_activate_on_insert``;
    without that attribute, napari's usual behaviour)."""
    before = getattr(layer_list, "_activate_on_insert", None)
    if before is not None:
        layer_list._activate_on_insert = False
    try:
        yield
    finally:
        if before is not None:
            layer_list._activate_on_insert = before
