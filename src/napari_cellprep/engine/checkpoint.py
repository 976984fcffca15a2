"""Checkpoints: one safetensors file (weights) whose header carries our JSON metadata.

Loading parses JSON and raw tensors only, so a checkpoint can never execute code.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..model import ModelConfig, SegmentationNet, build_model
from .classifier.fast import FastClassifier
from .classifier.state import ClassifierState
from .errors import CheckpointError, OutputExistsError, SettingsError
from .images.io import atomic_write
from .images.normalize import Normalization

FORMAT = "napari-cellprep"
FORMAT_VERSION = 1
SUFFIX = ".cellprep"
_META_KEY = "napari_cellprep"
_CLASSIFIER_KEY = "napari_cellprep_classifier"
CLASSIFIER_PREFIX = "classifier."
"""A pixel classifier's arrays are stored beside the weights under this prefix, its metadata
(JSON) under ``_CLASSIFIER_KEY``."""

DEFAULT_COLORS = ["#000000", "#ffd700", "#00bfff", "#ff4500", "#32cd32", "#da70d6", "#ff69b4", "#8b4513"]


@dataclass
class ModelInfo:
    """What a checkpoint says about its model, besides the weights."""

    config: ModelConfig
    class_names: list[str]
    normalization: Normalization = field(default_factory=Normalization)
    class_colors: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.class_names) != self.config.num_classes:
            raise SettingsError(
                f"{len(self.class_names)} class names given for {self.config.num_classes} classes"
            )
        if not self.class_colors:
            self.class_colors = default_colors(self.config.num_classes)
        if len(self.class_colors) != self.config.num_classes:
            raise SettingsError(
                f"{len(self.class_colors)} class colours given for {self.config.num_classes} classes"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "class_colors": list(self.class_colors),
            "normalization": self.normalization.to_dict(),
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(
            config=ModelConfig.from_dict(data["config"]),
            class_names=list(data["class_names"]),
            normalization=Normalization.from_dict(data["normalization"]),
            class_colors=list(data.get("class_colors") or []),
            training=dict(data.get("training") or {}),
            name=str(data.get("name", "")),
        )


@dataclass
class LoadedModel:
    """A network ready for inference (eval mode) and its description; ``classifier``: the fast
    pixel classifier that joins the network's ensemble, if the model has one."""

    model: SegmentationNet
    info: ModelInfo
    path: Path | None = None
    classifier: FastClassifier | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def label(self) -> str:
        """A short name for menus: the model's name, else its file name."""
        return self.info.name or (self.path.stem if self.path else "unsaved model")


def class_identifier(name: str) -> str:
    """A class name as an identifier (letters, digits, underscores; not a digit first), as the
    bioimage.io export names output channels."""
    text = re.sub(r"\W+", "_", name).strip("_") or "x"
    return text if not text[0].isdigit() else f"_{text}"


def check_class_names(names: list[str]) -> None:
    """Refuse (``SettingsError``) class names that are the same once made identifiers (``a``/``a``,
    two empty names, ``A B``/``A_B``): exported models would give two classes one channel."""
    seen: dict[str, str] = {}
    for name in names:
        key = class_identifier(name)
        if key in seen:
            raise SettingsError(
                f"class names {seen[key]!r} and {name!r} are the same once made identifiers "
                f"({key!r}); give every class a distinct name"
            )
        seen[key] = name


def default_colors(num_classes: int) -> list[str]:
    return [DEFAULT_COLORS[k % len(DEFAULT_COLORS)] for k in range(num_classes)]


def save_checkpoint(
    path: str | os.PathLike,
    model: SegmentationNet,
    info: ModelInfo,
    *,
    overwrite: bool = False,
    classifier: FastClassifier | None = None,
) -> Path:
    """Write ``model``, ``info`` and the ``classifier`` if any to ``path`` atomically (temporary
    file, then rename).

    An existing file is kept unless ``overwrite`` is true.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; choose another name or allow overwriting")
    if model.config != info.config:
        raise ValueError("the model's config does not match the info's config")
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    metadata = {_META_KEY: json.dumps(info.to_dict())}
    if classifier is not None:
        state = classifier.state()
        tensors.update({CLASSIFIER_PREFIX + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.arrays.items()})
        metadata[_CLASSIFIER_KEY] = json.dumps(state.meta)
    with atomic_write(path, overwrite) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def _header(path: Path) -> dict[str, Any]:
    """The safetensors header: the tensor table and ``__metadata__`` (no tensor is read)."""
    with path.open("rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if size <= 0 or size > min(path.stat().st_size - 8, 100_000_000):
            raise ValueError("bad header size")
        header = json.loads(fh.read(size))
    if not isinstance(header, dict):
        raise TypeError("the header is not a table")
    return header


def read_info(path: str | os.PathLike) -> ModelInfo:
    """Read only the JSON header of a checkpoint (cheap; used to recognise our files)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = json.loads(_header(path)["__metadata__"][_META_KEY])
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path} is not a napari-cellprep checkpoint (expected a safetensors file written by "
            f"napari-cellprep; pickled .pt/.pth files are refused because loading them can run code)"
        ) from exc
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a napari-cellprep checkpoint")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {data['format_version']}; this napari-cellprep reads up to "
            f"{FORMAT_VERSION}: upgrade napari-cellprep"
        )
    try:
        return ModelInfo.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} has an invalid model description: {exc}") from exc


def _check_tensors(path: Path, config: ModelConfig) -> None:
    """The file's tensor table against the module the description builds (on the meta device: no
    memory), before anything is allocated: the model then costs what the file holds."""
    with torch.device("meta"):
        expected = {name: list(t.shape) for name, t in build_model(config).state_dict().items()}
    try:
        table = {  # a pixel classifier's arrays are rebuilt and checked by its own code
            name: entry["shape"] for name, entry in _header(path).items()
            if name != "__metadata__" and not name.startswith(CLASSIFIER_PREFIX)
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is damaged or truncated: its tensor table cannot be read") from exc
    if table != expected:
        wrong = sorted(set(table) ^ set(expected)) or sorted(k for k in table if table[k] != expected[k])
        raise CheckpointError(
            f"{path}: the weights do not match the described architecture (first mismatch: {wrong[0]}); "
            f"the file is damaged or was not written by napari-cellprep"
        )


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model of a checkpoint, in eval mode on ``device``: the description is bounded
    (``ModelConfig``) and checked against the tensor shapes before any module is built."""
    path = Path(path)
    info = read_info(path)
    _check_tensors(path, info.config)
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged or truncated: {exc}") from exc
    stored = {k[len(CLASSIFIER_PREFIX):]: v.numpy() for k, v in tensors.items() if k.startswith(CLASSIFIER_PREFIX)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(CLASSIFIER_PREFIX)}
    model = build_model(info.config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the described architecture: {exc}") from exc
    return LoadedModel(model.to(device).eval(), info, path, _classifier(path, stored, info))


def _classifier(path: Path, arrays: dict[str, np.ndarray], info: ModelInfo) -> FastClassifier | None:
    """The pixel classifier stored in ``path`` (``None`` without one), rebuilt by our own code."""
    with path.open("rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    meta = header.get("__metadata__", {}).get(_CLASSIFIER_KEY)
    if meta is None and not arrays:
        return None
    try:
        fast = FastClassifier.from_state(ClassifierState(arrays, json.loads(meta)))
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: its pixel classifier cannot be rebuilt: {exc}") from exc
    if fast.num_classes != info.config.num_classes:
        raise CheckpointError(
            f"{path}: its pixel classifier has {fast.num_classes} classes, the network {info.config.num_classes}"
        )
    return fast


DEFAULT_MODEL = "default"
"""The reserved model name of the bundled model, wherever a model is asked for (a file of that
name is ``./default``)."""


def default_checkpoint_path() -> Path:
    """The model bundled with the package (trained on NIST phase-contrast tiles)."""
    return Path(str(resources.files("napari_cellprep").joinpath("models", DEFAULT_MODEL + SUFFIX)))


def model_path(name: str | os.PathLike | None) -> Path:
    """The checkpoint file a model name stands for: ``None`` or ``"default"`` the bundled model
    (``CheckpointError`` if this installation lacks it), anything else a file path."""
    if name is None or (isinstance(name, str) and name == DEFAULT_MODEL):
        path = default_checkpoint_path()
        if not path.is_file():
            raise CheckpointError(
                f"the bundled default model is not installed (expected at {path}); give a model file "
                f"(a {SUFFIX} checkpoint) instead"
            )
        return path
    return Path(name)


def load_model(name: str | os.PathLike | None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load the model ``name`` stands for (``model_path``: ``"default"`` is the bundled one)."""
    return load_checkpoint(model_path(name), device)


def load_default(device: str | torch.device = "cpu") -> LoadedModel:
    """Load the bundled default model."""
    return load_model(DEFAULT_MODEL, device)
