"""Checkpoints: exact round trip, metadata round trip, foreign/damaged/malicious files refused,
no silent overwrite, atomic writes."""

from __future__ import annotations

import json
import os
import pickle
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_cellprep.engine import checkpoint
from napari_cellprep.engine.checkpoint import (
    CheckpointError,
    ModelInfo,
    load_checkpoint,
    read_info,
    save_checkpoint,
)
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.model import ModelConfig, build_model

CONFIG = ModelConfig(num_classes=3, width=4, depth=2, penultimate=4)


def _trained_looking_model(config: ModelConfig = CONFIG) -> torch.nn.Module:
    """A tiny model whose BatchNorm running statistics are not the defaults."""
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        model.train()(torch.rand(2, config.in_channels, 32, 32) * 3)
    return model.eval()


def _info(config: ModelConfig = CONFIG) -> ModelInfo:
    return ModelInfo(
        config=config,
        class_names=["background", "membrane", "mitochondria"],
        normalization=Normalization("percentile", 2.0, 98.5),
        class_colors=["#000000", "#ff0000", "#00ff00"],
        training={"epochs": 3, "best_miou": 0.625, "history": [{"epoch": 1, "loss": 1.5}], "data": ["a.tif"]},
        name="liver test",
    )


@pytest.fixture
def saved(tmp_path):
    model = _trained_looking_model()
    path = save_checkpoint(tmp_path / "model.cellprep", model, _info())
    return model, path


def test_round_trip_reproduces_outputs_exactly(saved):
    model, path = saved
    x = torch.rand(1, 1, 40, 36)
    with torch.no_grad():
        expected = model(x)
        loaded = load_checkpoint(path)
        got = loaded.model(x)
    assert not loaded.model.training
    assert loaded.path == path
    assert loaded.label == "liver test"
    assert torch.equal(got.ensemble_logits, expected.ensemble_logits)
    assert torch.equal(got.filters, expected.filters)
    assert torch.equal(got.ensemble_weights, expected.ensemble_weights)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # readable like any file, not private
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_json_header_round_trips(saved):
    _, path = saved
    info = read_info(path)
    assert info == _info()
    assert info.class_names == ["background", "membrane", "mitochondria"]
    assert info.class_colors == ["#000000", "#ff0000", "#00ff00"]
    assert info.normalization == Normalization("percentile", 2.0, 98.5)
    assert info.training["history"] == [{"epoch": 1, "loss": 1.5}]
    assert load_checkpoint(path).info == info


def _assert_refused(path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_foreign_files_are_refused(tmp_path, saved):
    _, good = saved
    not_ours = "is not a napari-cellprep checkpoint"
    random_bytes = tmp_path / "random.cellprep"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_refused(random_bytes, not_ours)
    text = tmp_path / "notes.cellprep"
    text.write_text("these are my notes, not a model\n" * 10)
    _assert_refused(text, not_ours)
    plain = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(3)}, plain)
    _assert_refused(plain, not_ours)
    other_metadata = tmp_path / "other.safetensors"
    save_file(
        {"weight": torch.zeros(3)}, other_metadata, metadata={"napari_cellprep": json.dumps({"format": "x"})}
    )
    _assert_refused(other_metadata, "safetensors file but not a napari-cellprep checkpoint")
    plain_pickle = tmp_path / "weights.pt"
    torch.save(_trained_looking_model().state_dict(), plain_pickle)
    _assert_refused(plain_pickle, "pickled .pt/.pth files are refused")
    _assert_refused(tmp_path / "absent.cellprep", "does not exist")
    data = good.read_bytes()
    truncated_data = tmp_path / "truncated.cellprep"
    truncated_data.write_bytes(data[: len(data) - 100])
    _assert_refused(truncated_data, "damaged or truncated")
    truncated_header = tmp_path / "truncated_header.cellprep"
    truncated_header.write_bytes(data[:200])
    _assert_refused(truncated_header, not_ours)


def test_weights_that_do_not_match_the_description_are_refused(tmp_path):
    other = ModelConfig(num_classes=3, width=8, depth=2, penultimate=4)
    tensors = {k: v.contiguous() for k, v in _trained_looking_model(other).state_dict().items()}
    path = tmp_path / "mismatch.cellprep"
    save_file(tensors, path, metadata={"napari_cellprep": json.dumps(_info().to_dict())})
    _assert_refused(path, "weights do not match the described architecture")


@pytest.mark.parametrize("setting", [{"depth": 40}, {"width": 100000}, {"num_classes": 10**9}])
def test_a_description_beyond_sane_bounds_is_refused_before_anything_is_built(tmp_path, setting, monkeypatch):
    built = []
    monkeypatch.setattr(checkpoint, "build_model", lambda config: built.append(config))
    description = _info().to_dict()
    description["config"].update(setting)
    path = tmp_path / "crafted.cellprep"
    save_file({"weight": torch.zeros(3)}, path, metadata={"napari_cellprep": json.dumps(description)})
    _assert_refused(path, "invalid model description: .* must be at most")
    assert built == []


def test_weights_are_checked_against_the_description_before_the_model_is_allocated(tmp_path, monkeypatch):
    described = ModelConfig(num_classes=3, width=512, depth=4, penultimate=4)  # about 6 GB as float32
    tensors = {k: v.contiguous() for k, v in _trained_looking_model().state_dict().items()}
    path = tmp_path / "small_weights_big_description.cellprep"
    save_file(tensors, path, metadata={"napari_cellprep": json.dumps(_info(described).to_dict())})
    real, devices = checkpoint.build_model, []

    def build(config):
        devices.append(torch.empty(0).device.type)  # the default device the module is built on
        return real(config)

    monkeypatch.setattr(checkpoint, "build_model", build)
    _assert_refused(path, "weights do not match the described architecture")
    assert devices == ["meta"]


class _CreatesFile:
    """A pickle payload that creates a file when unpickled."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("name", ["model.cellprep", "model.pt"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, name):
    proof = tmp_path / "proof_the_payload_works"
    pickle.loads(pickle.dumps(_CreatesFile(proof))).close()
    assert proof.exists()  # the payload is real: unpickling it creates a file

    target = tmp_path / "pwned"
    path = tmp_path / name
    torch.save({"state_dict": _CreatesFile(target)}, path)
    with pytest.raises(CheckpointError, match="pickled .pt/.pth files are refused"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        read_info(path)
    assert not target.exists()


def test_save_refuses_to_overwrite(saved):
    model, path = saved
    before = path.read_bytes()
    other = _trained_looking_model(
        ModelConfig(num_classes=3, width=4, depth=2, penultimate=4, ensemble="fixed")
    )
    other_info = ModelInfo(other.config, ["a", "b", "c"])
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(path, other, other_info)
    assert path.read_bytes() == before
    save_checkpoint(path, other, other_info, overwrite=True)
    assert read_info(path).class_names == ["a", "b", "c"]


def test_failed_write_leaves_no_partial_file_and_original_intact(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def failing_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", failing_save_file)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, model, _info(), overwrite=True)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path.with_name("new.cellprep"), model, _info())
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.cellprep"]
    assert path.read_bytes() == before
