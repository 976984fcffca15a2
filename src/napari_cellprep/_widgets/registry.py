"""The models a napari session knows: the bundled default, files opened, models trained.

One registry is shared by every widget (``get_registry``); its ``changed`` signal lets the
Segment widget's model list follow new files and freshly trained models.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from psygnal import Signal

from ..engine.checkpoint import (
    CheckpointError,
    LoadedModel,
    ModelInfo,
    default_checkpoint_path,
    load_checkpoint,
    read_info,
)

Kind = Literal["default", "file", "trained"]


@dataclass(eq=False)
class ModelEntry:
    """One model in the registry. File models are loaded on first use; trained ones are in memory."""

    label: str
    kind: Kind
    info: ModelInfo
    path: Path | None = None
    loaded: LoadedModel | None = None


class ModelRegistry:
    """The session's models, in the order they became known (the default first)."""

    changed = Signal()

    def __init__(self, include_default: bool = True) -> None:
        self._entries: list[ModelEntry] = []
        self._lock = threading.Lock()
        if include_default:
            self._add_default()

    @property
    def entries(self) -> list[ModelEntry]:
        """The registered models, oldest first (a copy)."""
        return list(self._entries)

    def follow(self, widget, callback) -> None:
        """Call ``callback`` whenever the models change, for as long as ``widget`` (a magicgui
        widget) exists: a dock closed with its viewer stops following, instead of touching Qt
        widgets that are gone when a dock of a later viewer trains a model."""
        self.changed.connect(callback)
        widget.native.destroyed.connect(lambda *_: self.changed.disconnect(callback))

    def choices(self, _widget=None) -> list[tuple[str, ModelEntry]]:
        """(label, entry) pairs for a magicgui ComboBox's ``choices``."""
        return [(entry.label, entry) for entry in self._entries]

    def _add_default(self) -> None:
        path = default_checkpoint_path()
        if not path.is_file():  # not bundled in this install: simply not offered
            return
        try:
            info = read_info(path)
        except CheckpointError as exc:
            warnings.warn(f"the bundled default model is not offered: {exc}", stacklevel=2)
            return
        self._entries.append(ModelEntry(info.name or "bundled default model", "default", info, path))

    def _unique(self, label: str) -> str:
        taken = {entry.label for entry in self._entries}
        candidate, n = label, 2
        while candidate in taken:
            candidate, n = f"{label} ({n})", n + 1
        return candidate

    def add_file(self, path: str | Path) -> ModelEntry:
        """Register a checkpoint file (validated by its header; ``CheckpointError`` if not ours).

        A file already registered returns its existing entry.
        """
        path = Path(path).resolve()
        for entry in self._entries:
            if entry.path is not None and entry.path.resolve() == path:
                return entry
        info = read_info(path)
        entry = ModelEntry(self._unique(f"{info.name or path.stem} ({path.name})"), "file", info, path)
        self._entries.append(entry)
        self.changed.emit()
        return entry

    def add_trained(self, loaded: LoadedModel) -> ModelEntry:
        """Register a model trained in this session, usable at once."""
        entry = ModelEntry(self._unique(loaded.label), "trained", loaded.info, loaded.path, loaded)
        self._entries.append(entry)
        self.changed.emit()
        return entry

    def mark_saved(self, entry: ModelEntry, path: str | Path) -> None:
        """Record where a trained model was saved."""
        entry.path = Path(path)
        if entry.loaded is not None:
            entry.loaded.path = entry.path
        self.changed.emit()

    def load(self, entry: ModelEntry) -> LoadedModel:
        """The entry's model (loaded from its file on first use, on the CPU; thread-safe)."""
        with self._lock:
            if entry.loaded is None:
                entry.loaded = load_checkpoint(entry.path, "cpu")
            return entry.loaded

    def preload(self, entry: ModelEntry) -> threading.Thread | None:
        """Load the entry's model in a background thread, so that the first Train (or Segment)
        that needs it does not read the file on the GUI thread; None if already in memory."""
        if entry.loaded is not None:
            return None
        thread = threading.Thread(target=self._try_load, args=(entry,), name="cellprep-preload", daemon=True)
        thread.start()
        return thread

    def _try_load(self, entry: ModelEntry) -> None:
        try:
            self.load(entry)
        except (CheckpointError, OSError):
            pass  # reported, with its message, when the model is used


_registry: ModelRegistry | None = None


def get_registry() -> ModelRegistry:
    """The registry shared by all widgets of this process."""
    global _registry
    if _registry is None:
        _registry = ModelRegistry()
    return _registry
