"""Prediction models held once per process, keyed by their weights' hash.

A worker process gets a model as safetensors bytes (weights) plus JSON (its description), the
checkpoint format, so installing it parses data and never runs code; it is prepared
(``inference.prepare_model``) once and reused for every block that process predicts.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ...model import SegmentationNet, build_model
from ..checkpoint import CLASSIFIER_PREFIX, LoadedModel, ModelInfo
from ..classifier.fast import FastClassifier
from ..classifier.state import ClassifierState
from .inference import prepare_model

_MODELS: dict[str, tuple[SegmentationNet, FastClassifier | None]] = {}


def model_payload(loaded: LoadedModel) -> tuple[str, bytes]:
    """(key, bytes) of a model: its weights, its pixel classifier if any, and its description in
    one safetensors buffer."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in loaded.model.state_dict().items()}
    metadata = {"info": json.dumps(loaded.info.to_dict())}
    if loaded.classifier is not None:
        state = loaded.classifier.state()
        tensors.update({CLASSIFIER_PREFIX + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.arrays.items()})
        metadata["classifier"] = json.dumps(state.meta)
    payload = save_tensors(tensors, metadata=metadata)
    return hashlib.sha256(payload).hexdigest()[:20], payload


def install(key: str, loaded: LoadedModel, device: torch.device) -> None:
    """Hold a prepared copy of ``loaded`` (and its pixel classifier) under ``key`` in this process."""
    if key not in _MODELS:
        _MODELS[key] = (prepare_model(loaded.model, device), loaded.classifier)


def install_payload(key: str, payload: bytes, device: str) -> None:
    """Hold the model of a ``model_payload`` under ``key`` in this process (parsed, not executed)."""
    if key in _MODELS:
        return
    header_size = int.from_bytes(payload[:8], "little")
    metadata = json.loads(payload[8 : 8 + header_size])["__metadata__"]
    info = ModelInfo.from_dict(json.loads(metadata["info"]))
    tensors = load_tensors(payload)
    arrays = {k[len(CLASSIFIER_PREFIX):]: v.numpy() for k, v in tensors.items() if k.startswith(CLASSIFIER_PREFIX)}
    classifier = None
    if "classifier" in metadata:
        classifier = FastClassifier.from_state(ClassifierState(arrays, json.loads(metadata["classifier"])))
    model = build_model(info.config)
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(CLASSIFIER_PREFIX)}, strict=True)
    install(key, LoadedModel(model.eval(), info, classifier=classifier), torch.device(device))


def cached_model(key: str) -> tuple[SegmentationNet, FastClassifier | None]:
    """The prepared model installed under ``key``, and its pixel classifier if any."""
    if key not in _MODELS:
        raise RuntimeError(f"model {key} is not installed in this process (install it before predicting)")
    return _MODELS[key]
