"""Fine-tuning settings: frozen BatchNorm statistics."""

from __future__ import annotations

import numpy as np
import torch

from napari_cellprep.engine.checkpoint import LoadedModel, ModelInfo
from napari_cellprep.engine.data import from_mask
from napari_cellprep.engine.normalize import Normalization
from napari_cellprep.engine.training import TrainConfig, train
from napari_cellprep.model import ModelConfig, build_model


def _norm_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def test_frozen_norm_keeps_the_running_statistics_and_still_learns():
    rng = np.random.default_rng(0)
    image = rng.random((48, 48)).astype(np.float32)
    mask = (image > 0.5).astype(np.uint8)
    config = ModelConfig(num_classes=2, width=4, depth=2)
    torch.manual_seed(0)
    init = LoadedModel(build_model(config).eval(), ModelInfo(config, ["a", "b"]))
    before = _norm_state(init.model)
    weights_before = init.model.head2.weight.detach().clone()
    settings = dict(epochs=1, steps_per_epoch=3, batch_size=2, patch_size=32, device="cpu")
    items = [from_mask(image, mask, Normalization())]
    frozen = train(items, None, init.info, TrainConfig(freeze_norm=True, **settings), init=init).model.model
    assert all(torch.equal(frozen.state_dict()[k], v) for k, v in before.items())
    assert not torch.equal(frozen.head2.weight, weights_before)
    moving = train(items, None, init.info, TrainConfig(freeze_norm=False, **settings), init=init).model.model
    assert not all(torch.equal(moving.state_dict()[k], v) for k, v in before.items() if "running_mean" in k)
