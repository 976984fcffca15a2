import pytest
import torch
import torch.nn.functional as F

from napari_cellprep.model import IGNORE_INDEX, ModelConfig, build_model, method_loss, output_names


def model_for(seed: int = 0, **settings):
    torch.manual_seed(seed)
    config = ModelConfig(**{"width": 4, "depth": 2, **settings})
    return build_model(config).eval()


@pytest.mark.parametrize("backbone", ["unet", "attention-unet", "unet++"])
@pytest.mark.parametrize("architecture", ["cellprep", "unet"])
def test_output_shapes(architecture, backbone):
    depth = 4 if backbone == "unet++" else 2
    model = model_for(num_classes=3, in_channels=2, architecture=architecture, backbone=backbone, depth=depth)
    with torch.no_grad():
        out = model(torch.rand(2, 2, 32, 48))
    s = 4 if architecture == "cellprep" else 1
    assert out.branch_logits.shape == (2, s, 3, 32, 48)
    assert out.ensemble_logits.shape == (2, 3, 32, 48)
    assert out.ensemble_weights.shape == (s,)
    if architecture == "cellprep":
        assert out.filters.shape == (2, 3, 32, 48) and out.translated.shape == (2, 3, 2, 32, 48)
    else:
        assert out.filters is None and out.translated is None
        torch.testing.assert_close(out.ensemble_logits, out.branch_logits[:, 0])


@pytest.mark.parametrize("size", [(37, 53), (5, 9), (64, 17)])
def test_arbitrary_input_sizes_are_padded_and_cropped_back(size):
    model = model_for(num_classes=2)
    x = torch.rand(1, 1, *size)
    with torch.no_grad():
        out = model(x)
    assert out.ensemble_logits.shape[-2:] == size and out.translated.shape[-2:] == size
    torch.testing.assert_close(out.translated, torch.sigmoid(x.unsqueeze(1) + out.filters.unsqueeze(2)))


def test_learned_ensemble_is_a_pointwise_conv3d_with_bias():
    model = model_for(num_classes=3, ensemble="learned")
    conv = model.ensemble
    assert isinstance(conv, torch.nn.Conv3d)
    assert conv.kernel_size == (1, 1, 1) and conv.in_channels == 4 and conv.out_channels == 1
    assert conv.bias is not None
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]).view(1, 4, 1, 1, 1))
        conv.bias.fill_(0.3)
        out = model(torch.rand(2, 1, 16, 16))
    expected = torch.einsum("s,bschw->bchw", torch.tensor([0.5, -1.0, 2.0, 0.25]), out.branch_logits) + 0.3
    torch.testing.assert_close(out.ensemble_logits, expected)
    torch.testing.assert_close(out.ensemble_weights, torch.tensor([0.5, -1.0, 2.0, 0.25]))
    assert float(out.ensemble_bias.detach()) == pytest.approx(0.3)


def test_equal_ensemble_init_starts_at_one_over_s():
    model = model_for(num_classes=2, ensemble="learned", ensemble_init="equal")
    torch.testing.assert_close(model.ensemble.weight.flatten(), torch.full((3,), 1 / 3))
    assert float(model.ensemble.bias.detach()) == 0.0


def test_fixed_ensemble_sums_all_outputs_with_weight_one():
    model = model_for(num_classes=2, ensemble="fixed")
    assert model.ensemble is None and not any("ensemble" in name for name, _ in model.named_parameters())
    with torch.no_grad():
        out = model(torch.rand(1, 1, 16, 16))
    torch.testing.assert_close(out.ensemble_weights, torch.ones(3))
    torch.testing.assert_close(out.ensemble_logits, out.branch_logits.sum(1))


def test_no_ensemble_uses_network_2_alone():
    model = model_for(num_classes=3, ensemble="none")
    with torch.no_grad():
        out = model(torch.rand(1, 1, 16, 16))
    assert float(out.ensemble_weights[0]) == 0.0
    torch.testing.assert_close(out.ensemble_logits, out.branch_logits[:, 1:].mean(1))


def test_filters_are_non_negative_and_translated_is_sigmoid_of_image_plus_filter():
    model = model_for(num_classes=3, in_channels=2)
    x = torch.rand(2, 2, 16, 16) * 4 - 2
    with torch.no_grad():
        out = model(x)
    assert (out.filters >= 0).all() and (out.filters > 0).any()
    for k in range(3):
        for c in range(2):
            torch.testing.assert_close(out.translated[:, k, c], torch.sigmoid(x[:, c] + out.filters[:, k]))
    assert out.filters.shape[1] == 3  # the first C penultimate maps, also with a wider penultimate layer
    wide = model_for(num_classes=2, penultimate=6)
    assert wide.penultimate[0].out_channels == 6 and wide(torch.rand(1, 1, 8, 8)).filters.shape[1] == 2


def test_network_2_is_one_batched_call_with_shared_weights():
    model = model_for(num_classes=3)
    calls = []
    model.net2.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape))
    with torch.no_grad():
        out = model(torch.rand(2, 1, 16, 16))
    assert calls == [torch.Size([6, 1, 16, 16])]  # B·C translated images in one call
    # each branch k of network 2 is the same network applied to t_k alone
    with torch.no_grad():
        alone = model.head2(model.net2(out.translated[:, 1]))
    torch.testing.assert_close(out.branch_logits[:, 2], alone, rtol=1e-4, atol=1e-5)


def test_gradients_flow_through_the_translated_images_into_network_1():
    model = model_for(num_classes=2).train()
    out = model(torch.rand(2, 1, 16, 16))
    out.branch_logits[:, 1:].sum().backward()  # network 2's outputs only
    first_conv = model.net1.encoders[0][0][0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    head1 = model.head1.weight.grad  # network 1's own head does not feed network 2
    assert head1 is None or not head1.any()


def test_loss_is_sum_of_branch_cross_entropies_plus_ensemble_and_ignores_unlabeled():
    model = model_for(num_classes=3)
    with torch.no_grad():
        out = model(torch.rand(2, 1, 16, 16))
    target = torch.randint(0, 3, (2, 16, 16))
    target[:, :4] = IGNORE_INDEX
    total, parts = method_loss(out, target)
    labeled = target != IGNORE_INDEX

    def ce(logits):  # (B, C, H, W) -> mean CE over labeled pixels only
        return F.cross_entropy(logits.permute(0, 2, 3, 1)[labeled], target[labeled])

    expected = [float(ce(out.branch_logits[:, s])) for s in range(4)] + [float(ce(out.ensemble_logits))]
    assert parts == pytest.approx(expected, rel=1e-5)
    assert float(total) == pytest.approx(sum(expected), rel=1e-5)
    # changing the logits at unlabeled pixels changes nothing
    out.branch_logits[:, :, :, :4] += 100.0
    out.ensemble_logits[:, :, :4] -= 100.0
    assert method_loss(out, target)[1] == pytest.approx(expected, rel=1e-5)


def test_loss_with_no_labeled_pixel_is_zero_and_plain_model_counts_once():
    model = model_for(num_classes=2, architecture="unet")
    out = model(torch.rand(1, 1, 8, 8))
    total, parts = method_loss(out, torch.full((1, 8, 8), IGNORE_INDEX))
    assert float(total) == 0.0 and parts == [0.0, 0.0]
    target = torch.randint(0, 2, (1, 8, 8))
    total, parts = method_loss(out, target)
    assert float(total) == pytest.approx(float(F.cross_entropy(out.ensemble_logits, target)))
    assert parts[0] == parts[1] == pytest.approx(float(total))


def test_output_names():
    config = ModelConfig(num_classes=2)
    assert output_names(config) == ["network 1", "network 2 on t1", "network 2 on t2"]
    assert output_names(ModelConfig(architecture="unet", backbone="attention-unet")) == ["attention-unet"]


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(backbone="resnet"), "backbone"),
        (dict(ensemble="mean"), "ensemble"),
        (dict(backbone="unet++", depth=3), "depth=4"),
        (dict(num_classes=3, penultimate=2), "penultimate"),
    ],
)
def test_config_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**settings)
