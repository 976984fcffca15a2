"""The model options of issue #10: upsampling without a grid, live filters, an ensemble that cannot
invert a branch, per-image normalisation; named configurations; the grid measure."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from benchmarks.harness.periodicity import lattice_power_share, lattice_ratio
from napari_cellprep.engine.checkpoint import ModelInfo, load_checkpoint, save_checkpoint
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.model import PAPER, ModelConfig, build_model, method_loss, named_config
from napari_cellprep.model.unet import SplitBatchNorm2d, UNet

PRODUCT_LIKE = {"upsample": "resize", "filter_activation": "softplus", "ensemble": "softmax", "norm": "group"}


def _interior_std(upsample: str) -> float:
    """Largest spatial std of the U-Net's features in the middle of a constant image."""
    torch.manual_seed(0)
    net = UNet(1, width=4, depth=2, upsample=upsample).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # statistics as after training: not all zero
                module.running_mean.uniform_(-0.1, 0.1)
        features = net(torch.full((1, 1, 128, 128), 0.5))
    return float(features[0, :, 48:80, 48:80].std(dim=(1, 2)).max())


def test_resize_upsampling_keeps_a_constant_image_constant_where_transposed_conv_makes_a_grid():
    assert _interior_std("transpose") > 1e-4
    assert _interior_std("resize") < 1e-6


def _shift_error(downsample: str, seed: int) -> float:
    """How much a 1-pixel shift of a smooth input changes the U-Net's features (beyond the shift),
    relative to their spread: 0 for a shift-equivariant network."""
    torch.manual_seed(seed)
    net = UNet(1, width=4, depth=2, upsample="resize", downsample=downsample).eval()
    x = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 136, 136), 5, 1, 2)
    with torch.no_grad():
        a = net(x[..., :128, :128])[..., 8:120, 8:120]
        b = net(x[..., 1:129, 1:129])[..., 7:119, 7:119]
    return float((a - b).abs().mean() / a.std())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blur_pooling_makes_the_unet_closer_to_shift_equivariant(seed):
    assert _shift_error("blur", seed) < 0.7 * _shift_error("max", seed)


def test_blur_pooling_downsamples_by_two_and_replaces_monais_max_pooling():
    from napari_cellprep.model.unet import MaxBlurPool2d

    x = torch.rand(2, 3, 16, 20)
    assert MaxBlurPool2d()(x).shape == (2, 3, 8, 10)
    assert torch.allclose(MaxBlurPool2d()(torch.full((1, 1, 8, 8), 0.5)), torch.full((1, 1, 4, 4), 0.5))
    pools = {
        type(m).__name__
        for m in build_model(ModelConfig(backbone="unet++", width=4, downsample="blur")).modules()
    }
    assert "MaxBlurPool2d" in pools and "MaxPool2d" not in pools


def test_softplus_filters_are_positive_everywhere_relu_filters_are_not():
    x = torch.rand(2, 1, 32, 32)
    torch.manual_seed(0)
    relu = build_model(ModelConfig(width=4, depth=2, filter_activation="relu")).eval()
    torch.manual_seed(0)
    softplus = build_model(ModelConfig(width=4, depth=2, filter_activation="softplus")).eval()
    with torch.no_grad():
        assert float((relu(x).filters == 0).float().mean()) > 0.1
        assert float(softplus(x).filters.min()) > 0


def test_softmax_ensemble_starts_equal_and_stays_a_convex_combination():
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, depth=2, ensemble="softmax"))
    weights, bias = model.ensemble_parameters()
    assert torch.allclose(weights, torch.full((3,), 1 / 3)) and float(bias) == 0
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
    x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    for _ in range(3):
        optimizer.zero_grad()
        method_loss(model(x), y)[0].backward()
        optimizer.step()
    out = model(x)
    weights = out.ensemble_weights.detach()
    assert float(weights.min()) >= 0 and abs(float(weights.sum()) - 1) < 1e-6
    assert not torch.allclose(weights, torch.full((3,), 1 / 3))  # it learned
    expected = torch.einsum("s,bschw->bchw", weights, out.branch_logits.detach())
    assert torch.allclose(out.ensemble_logits.detach(), expected, atol=1e-5)


@pytest.mark.parametrize("norm, independent", [("group", True), ("batch", False)])
def test_group_norm_normalises_each_image_on_its_own(norm, independent):
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=8, depth=2, norm=norm)).train()
    a, b = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32) * 5
    with torch.no_grad():
        alone = model(a).ensemble_logits
        together = model(torch.cat([a, b])).ensemble_logits[:1]
    assert torch.allclose(alone, together, atol=1e-5) == independent


def test_checkpoints_before_the_options_load_as_the_paper_built_them():
    old = ModelConfig(num_classes=2, width=4, depth=2).to_dict()
    for key in ("upsample", "downsample", "filter_activation", "norm"):
        del old[key]
    config = ModelConfig.from_dict(old)
    assert (config.upsample, config.downsample, config.filter_activation, config.norm) == (
        "transpose",
        "max",
        "relu",
        "batch",
    )


def test_named_configurations():
    paper = named_config("paper", num_classes=3, width=4)
    assert all(getattr(paper, k) == v for k, v in PAPER.items()) and paper.num_classes == 3
    assert named_config("default", width=4) == ModelConfig(width=4)
    with pytest.raises(ValueError, match="unknown configuration 'papr'"):
        named_config("papr")
    with pytest.raises(ValueError, match="upsample must be one of"):
        ModelConfig(upsample="nearest")
    with pytest.raises(ValueError, match="downsample must be one of"):
        ModelConfig(downsample="avg")


def test_options_round_trip_through_a_checkpoint(tmp_path):
    config = ModelConfig(width=4, depth=2, **PRODUCT_LIKE)
    torch.manual_seed(0)
    model = build_model(config).eval()
    path = save_checkpoint(
        tmp_path / "m.cellprep", model, ModelInfo(config, ["a", "b"], Normalization("minmax"))
    )
    loaded = load_checkpoint(path)
    assert loaded.info.config == config
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x).ensemble_logits, model(x).ensemble_logits)


def test_lattice_share_finds_a_dot_grid_and_not_a_smooth_image():
    rows, cols = np.mgrid[:64, :64]
    grid = ((rows % 4 == 1) & (cols % 4 == 2)).astype(float)
    smooth = np.sin(rows / 9.0) + np.cos(cols / 7.0)
    assert lattice_power_share(grid) == pytest.approx(1.0)
    assert lattice_power_share(smooth) < 1e-2
    assert lattice_ratio(grid + smooth, smooth) > 10
    assert lattice_ratio(smooth * 2, smooth) == pytest.approx(1.0)
    assert lattice_power_share(np.ones((8, 8))) == 0.0
    with pytest.raises(ValueError, match="multiple of 4"):
        lattice_power_share(np.zeros((10, 12)))


def _with_config(path, model_settings: dict, tensors: dict | None = None) -> None:
    """Rewrite a checkpoint as an older version wrote it: ``model_settings`` in its header's model
    config and ``tensors`` beside its weights."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    header = json.loads(metadata["napari_cellprep"])
    header["config"].update(model_settings)
    save_file({**load_file(path), **(tensors or {})}, path, metadata={"napari_cellprep": json.dumps(header)})


def test_a_checkpoint_naming_the_removed_denoise_head_loads_when_it_was_off(tmp_path):
    from napari_cellprep.engine.checkpoint import read_info
    from napari_cellprep.engine.errors import CheckpointError

    config = ModelConfig(width=4, depth=2)
    torch.manual_seed(0)
    model = build_model(config).eval()
    off, on = tmp_path / "off.cellprep", tmp_path / "on.cellprep"
    for path in (off, on):
        save_checkpoint(path, model, ModelInfo(config, ["a", "b"]))
    _with_config(off, {"denoise_head": False})  # as every checkpoint before the removal says
    loaded = load_checkpoint(off)
    assert loaded.info.config == config and "denoise_head" not in loaded.info.config.to_dict()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x).ensemble_logits, model(x).ensemble_logits)
    head = {"denoise.weight": torch.zeros(1, 16, 1, 1), "denoise.bias": torch.zeros(1)}
    _with_config(on, {"denoise_head": True}, head)
    for read in (read_info, load_checkpoint):
        with pytest.raises(CheckpointError, match="built with denoise_head.*measured worse.*retrain it"):
            read(on)


def _per_image_features(model, translated: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Network 2 run once per translated image with plain BatchNorm (the authors' loop), from the
    model's current state: features (B·C, ...) interleaved as the batched call, running means."""
    features, means = [], []
    for k in range(translated.shape[1]):
        net2 = copy.deepcopy(model.net2)
        for module in net2.modules():
            if isinstance(module, SplitBatchNorm2d):
                module.splits = 1
        features.append(net2(translated[:, k]))
        means.append(next(m for m in net2.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean)
    return torch.stack(features, 1).flatten(0, 1), means


@pytest.mark.parametrize("norm, per_image", [("split-batch", True), ("batch", False)])
def test_split_batch_norm_gives_network_2_the_statistics_of_the_authors_loop(norm, per_image):
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, depth=2, norm=norm)).train()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        translated = model.trunk(x)["translated"]
        translated[:, 1] = translated[:, 1] * 0.2 + 0.7  # unlike the other translated image
        reference = copy.deepcopy(model)
        batched = model.net2(translated.flatten(0, 1))
        looped, means = _per_image_features(reference, translated)
    assert torch.allclose(batched, looped, atol=1e-5) == per_image
    if per_image:  # running statistics: the average of the per-image layers'
        first = next(m for m in model.net2.modules() if isinstance(m, SplitBatchNorm2d))
        assert torch.allclose(first.running_mean, (means[0] + means[1]) / 2, atol=1e-6)
        assert not any(isinstance(m, SplitBatchNorm2d) for m in model.net1.modules())


def test_split_batch_norm_evaluates_as_batch_norm_and_loads_as_it():
    torch.manual_seed(0)
    split = build_model(ModelConfig(width=4, depth=2, norm="split-batch", backbone="attention-unet"))
    plain = build_model(ModelConfig(width=4, depth=2, norm="batch", backbone="attention-unet"))
    split.train()(torch.rand(2, 1, 32, 32))  # running statistics that are not the initial ones
    plain.load_state_dict(split.state_dict())
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(split.eval()(x).ensemble_logits, plain.eval()(x).ensemble_logits, atol=1e-5)
    with pytest.raises(ValueError, match="not a whole number of 2 translated images"):
        next(m for m in split.net2.modules() if isinstance(m, SplitBatchNorm2d)).train()(
            torch.rand(3, 4, 8, 8)
        )


def test_split_batch_norm_converts_the_unet_plus_plus_backbone():
    model = build_model(ModelConfig(width=4, depth=4, norm="split-batch", backbone="unet++", num_classes=3))
    splits = {m.splits for m in model.net2.modules() if isinstance(m, SplitBatchNorm2d)}
    assert splits == {3}
    assert not any(isinstance(m, SplitBatchNorm2d) for m in model.net1.modules())


def test_split_batch_norm_statistics_re_estimated_as_the_average_of_the_translated_images():
    from napari_cellprep.engine.training.loop import adapt_batch_norm

    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, depth=2, norm="split-batch"))
    first = next(m for m in model.net2.modules() if isinstance(m, SplitBatchNorm2d))
    seen = []
    first.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    adapt_batch_norm(model, [torch.rand(3, 1, 32, 32)])  # momentum None: one batch's statistics
    per_image = seen[0].unflatten(0, (3, 2)).mean(dim=(0, 3, 4))  # (translated image, channel)
    assert torch.allclose(first.running_mean, per_image.mean(0), atol=1e-6)
    assert int(first.num_batches_tracked) == 1 and first.momentum == 0.1 and not model.training
