"""The optional self-supervised target of network 1 (issue #10 §1): a denoise head trained by a
Noise2Void blind-spot loss on every pixel, labeled or not."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from napari_cellprep import cli
from napari_cellprep.engine.checkpoint import ModelInfo, load_checkpoint, read_info, save_checkpoint
from napari_cellprep.engine.errors import SettingsError
from napari_cellprep.engine.images.io import write_image
from napari_cellprep.engine.prediction.inference import OUTPUTS, predict
from napari_cellprep.engine.training.data import LabeledImage
from napari_cellprep.engine.training.losses import training_loss, weighted_loss
from napari_cellprep.engine.training.loop import TrainConfig, train
from napari_cellprep.model import IGNORE_INDEX, ModelConfig, build_model, method_loss
from napari_cellprep.model.loss import n2v_mask, self_supervised_loss
from tests.conftest import disks

HEAD = ModelConfig(num_classes=2, width=4, depth=2, denoise_head=True)


def test_masking_replaces_the_chosen_fraction_with_neighbours_only():
    x = torch.rand(3, 2, 20, 24)  # continuous values: every replacement changes the pixel
    masked, mask = n2v_mask(x, fraction=0.05, generator=torch.Generator().manual_seed(0))
    count = round(0.05 * 20 * 24)
    assert mask.shape == (3, 20, 24) and mask.sum(dim=(1, 2)).tolist() == [count] * 3
    assert torch.equal(masked[~mask[:, None].expand_as(x)], x[~mask[:, None].expand_as(x)])  # the rest as it was
    for b, row, col in mask.nonzero().tolist():
        value = masked[b, :, row, col]
        assert not torch.equal(value, x[b, :, row, col])  # never the pixel itself
        window = x[b, :, max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3]
        # every channel from one pixel of the 5×5 window around it
        assert (window == value[:, None, None]).all(dim=0).any()
    again, _ = n2v_mask(x, fraction=0.05, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, masked)  # repeatable from the generator
    # an image's edges and a tiny fraction: at least one pixel, still a neighbour
    small = torch.arange(25.0).reshape(1, 1, 5, 5)
    masked, mask = n2v_mask(small, fraction=1e-6, generator=torch.Generator().manual_seed(1))
    assert int(mask.sum()) == 1 and int((masked != small).sum()) == 1


def test_the_loss_is_eq_1_exactly_when_the_weight_is_zero():
    torch.manual_seed(0)
    model = build_model(HEAD).train()
    x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    torch.manual_seed(1)
    loss, parts, output = training_loss(model, x, y)
    torch.manual_seed(1)
    expected, expected_parts = method_loss(model(x), y)
    assert torch.equal(loss, expected) and parts == expected_parts and len(parts) == 4
    assert output.denoised.shape == (2, 1, 32, 32)  # the head runs; it just does not count

    # W > 0: Eq. 1 of the masked batch's pass plus W × the masked-pixel MSE to the unmasked batch
    torch.manual_seed(1)
    loss, parts, output = training_loss(model, x, y, None, 3.0, torch.Generator().manual_seed(5))
    masked, mask = n2v_mask(x, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    again = model(masked)
    eq1, eq1_parts = weighted_loss(again, y, None)
    mse = ((again.denoised - x)[:, 0][mask] ** 2).mean().detach()
    assert torch.allclose(loss.detach(), eq1.detach() + 3.0 * mse) and parts[:4] == pytest.approx(eq1_parts)
    assert parts[4] == pytest.approx(3.0 * float(mse)) and sum(parts) == pytest.approx(float(loss))


def test_the_denoise_head_learns_to_denoise_an_image_without_a_single_label():
    size, sigma = 64, 0.2
    yy, xx = np.mgrid[:size, :size] / size
    clean = torch.from_numpy(0.5 + 0.25 * np.sin(4 * np.pi * yy) * np.cos(6 * np.pi * xx)).float()[None, None]
    noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model(HEAD)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    masking, rng = torch.Generator().manual_seed(0), np.random.default_rng(1)
    no_labels = torch.full((4, 32, 32), IGNORE_INDEX)

    def error_to_clean() -> float:
        model.eval()
        with torch.no_grad():
            error = float((model(noisy).denoised - clean).square().mean())
        model.train()
        return error

    before = error_to_clean()
    for _ in range(80):
        corners = rng.integers(0, size - 32, (4, 2))
        batch = torch.cat([noisy[..., r : r + 32, c : c + 32] for r, c in corners])
        optimizer.zero_grad()
        loss, parts, _ = training_loss(model, batch, no_labels, None, 1.0, masking)
        loss.backward()
        optimizer.step()
        assert parts[:4] == [0.0] * 4  # no label: Eq. 1 is zero, the blind-spot loss teaches alone
    after = error_to_clean()
    # better than the noisy image itself (error σ² = 0.04): it denoises, it does not copy its input
    # (without the masking, the same 80 steps reach 0.036: the identity; here about 0.008)
    assert after < before / 5 and after < sigma**2 / 3


def test_a_positive_weight_needs_the_head_and_says_what_to_set():
    image = np.random.default_rng(0).random((1, 32, 32), dtype=np.float32)
    item = LabeledImage(image, (image[0] > 0.5).astype(np.int64))
    settings = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, patch_size=32, device="cpu",
                           self_supervised_weight=2.0)
    plain = ModelInfo(ModelConfig(width=4, depth=2), ["a", "b"])
    with pytest.raises(SettingsError, match=r"denoise_head=True.*--denoise-head"):
        train([item], None, plain, settings)
    with pytest.raises(SettingsError, match="self_supervised_weight must be 0"):
        TrainConfig(self_supervised_weight=-1.0)
    x = torch.from_numpy(image)[None]
    with pytest.raises(ValueError, match="no denoise head"):
        self_supervised_loss(build_model(plain.config)(x), x, torch.ones(1, 32, 32, dtype=torch.bool))


def test_training_with_the_weight_reports_the_denoising_loss_and_records_it():
    image, mask = disks(0, (64, 64))
    item = LabeledImage((image[None] / image.max()).astype(np.float32), mask.astype(np.int64))
    settings = dict(epochs=1, steps_per_epoch=2, batch_size=2, patch_size=32, device="cpu")
    events = []
    result = train([item], None, ModelInfo(HEAD, ["a", "b"]), TrainConfig(**settings, self_supervised_weight=4.0),
                   callback=events.append)
    assert list(result.history[0].losses)[-1] == "denoising" and result.history[0].losses["denoising"] > 0
    assert result.model.info.training["self_supervised_weight"] == 4.0
    plain = train([item], None, ModelInfo(HEAD, ["a", "b"]), TrainConfig(**settings))
    assert "denoising" not in plain.history[0].losses and plain.model.info.training["self_supervised_weight"] == 0


def test_a_checkpoint_with_the_head_round_trips_and_predicts_the_denoised_image(tmp_path):
    torch.manual_seed(0)
    model = build_model(HEAD).eval()
    path = save_checkpoint(tmp_path / "n2v.cellprep", model, ModelInfo(HEAD, ["a", "b"]))
    loaded = load_checkpoint(path)
    assert loaded.info.config.denoise_head and "denoise.weight" in loaded.model.state_dict()
    image = np.random.default_rng(0).random((40, 36)).astype(np.float32)
    x = torch.from_numpy(image)[None, None]
    with torch.no_grad():
        assert torch.equal(loaded.model(x).denoised, model(x).denoised)
        # the tiled path gives it when asked for (min-max of a 0..1 image holding 0 and 1: the same input)
        image[0, 0], image[0, 1] = 0.0, 1.0
        whole = model(torch.from_numpy(image)[None, None]).denoised[0].numpy()
    asked = predict(loaded, image, outputs=("denoised",))
    assert asked.denoised.shape == (1, 40, 36)
    np.testing.assert_allclose(asked.denoised, whole, atol=1e-5)
    assert predict(loaded, image).denoised is None  # not among OUTPUTS: only when named
    assert "denoised" not in OUTPUTS
    assert predict(load_checkpoint(path), image[None], outputs=("denoised",)).denoised.shape == (1, 1, 40, 36)
    # a model without the head: no image, and old checkpoints' configs load without the head
    old = ModelConfig(width=4, depth=2).to_dict()
    del old["denoise_head"]
    assert ModelConfig.from_dict(old).denoise_head is False


def _cellprep(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, err.getvalue()


def test_the_cli_flags_reach_the_model_and_the_training_settings(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for k in range(2):
        image, mask = disks(k, (64, 64))
        write_image(images / f"cell{k}.tif", image)
        write_image(masks / f"cell{k}.png", mask)
    common = ["train", "--images", images, "--masks", masks, "--width", "4", "--depth", "2", "--batch-size", "2",
              "--patch-size", "32", "--epochs", "1", "--steps-per-epoch", "1", "--val-fraction", "0",
              "--device", "cpu"]
    code, err = _cellprep(*common, "--out", tmp_path / "no_head.cellprep", "--self-supervised", "0.5")
    assert code == 1 and "--denoise-head" in err and "Traceback" not in err
    out = tmp_path / "n2v.cellprep"
    code, err = _cellprep(*common, "--out", out, "--denoise-head", "--self-supervised", "0.5")
    assert code == 0, err
    info = read_info(out)
    assert info.config.denoise_head is True and info.training["self_supervised_weight"] == 0.5
