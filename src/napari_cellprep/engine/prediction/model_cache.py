"""Prediction models held once per process, keyed by their weights' hash.

A worker process gets a model as safetensors bytes (weights) plus JSON (its description), the
checkpoint format, so installing it parses data and never runs code; it is prepared
(``inference.prepare_model``) once and reused for every block that process predicts.
"""

from __future__ import annotations

import hashlib
import json

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ...model import SegmentationNet, build_model
from ..checkpoint import LoadedModel, ModelInfo
from .inference import prepare_model

_MODELS: dict[str, SegmentationNet] = {}


def model_payload(loaded: LoadedModel) -> tuple[str, bytes]:
    """(key, bytes) of a model: its weights and description in one safetensors buffer."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in loaded.model.state_dict().items()}
    payload = save_tensors(tensors, metadata={"info": json.dumps(loaded.info.to_dict())})
    return hashlib.sha256(payload).hexdigest()[:20], payload


def install(key: str, loaded: LoadedModel, device: torch.device) -> None:
    """Hold a prepared copy of ``loaded`` under ``key`` in this process."""
    if key not in _MODELS:
        _MODELS[key] = prepare_model(loaded.model, device)


def install_payload(key: str, payload: bytes, device: str) -> None:
    """Hold the model of a ``model_payload`` under ``key`` in this process (parsed, not executed)."""
    if key in _MODELS:
        return
    header_size = int.from_bytes(payload[:8], "little")
    info = ModelInfo.from_dict(json.loads(json.loads(payload[8 : 8 + header_size])["__metadata__"]["info"]))
    model = build_model(info.config)
    model.load_state_dict(load_tensors(payload), strict=True)
    install(key, LoadedModel(model.eval(), info), torch.device(device))


def cached_model(key: str) -> SegmentationNet:
    """The prepared model installed under ``key``."""
    if key not in _MODELS:
        raise RuntimeError(f"model {key} is not installed in this process (install it before predicting)")
    return _MODELS[key]
