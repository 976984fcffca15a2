"""The optional filter-decorrelation term (issue #10): D × the mean squared correlation of each
pair of translation filters, so that they cannot all become one map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cellprep import cli
from napari_cellprep.engine.checkpoint import ModelInfo, read_info
from napari_cellprep.engine.errors import SettingsError
from napari_cellprep.engine.images.io import write_image
from napari_cellprep.engine.training.data import LabeledImage
from napari_cellprep.engine.training.loop import TrainConfig, train
from napari_cellprep.engine.training.losses import training_loss, weighted_loss
from napari_cellprep.model import ModelConfig, build_model
from napari_cellprep.model.loss import filter_correlation
from tests.conftest import disks

TINY = ModelConfig(num_classes=2, width=4, depth=2)


def test_the_correlation_is_1_for_one_map_0_for_unrelated_ones_and_averages_pairs():
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    a = torch.sin(2 * np.pi * xx / 8)
    b = torch.cos(2 * np.pi * xx / 8)  # orthogonal to a over whole periods, both mean 0
    c = torch.sin(2 * np.pi * yy / 8)
    assert float(filter_correlation(torch.stack([a, 3 * a + 1])[None])) == pytest.approx(1.0, abs=1e-5)
    assert float(filter_correlation(torch.stack([a, -a])[None])) == pytest.approx(1.0, abs=1e-5)
    assert float(filter_correlation(torch.stack([a, b, c])[None])) == pytest.approx(0.0, abs=1e-6)
    assert float(filter_correlation(torch.stack([a, torch.full_like(a, 2.0)])[None])) == 0.0  # constant
    # pairs (a, a) 1, (a, b) 0, (a, b) 0: a mean of 1/3; images are averaged too
    three = torch.stack([a, a, b])[None]
    assert float(filter_correlation(three)) == pytest.approx(1 / 3, abs=1e-5)
    both = torch.cat([three, torch.stack([a, b, c])[None]])
    assert float(filter_correlation(both)) == pytest.approx(1 / 6, abs=1e-5)
    with pytest.raises(ValueError, match="at least 2 filters"):
        filter_correlation(a[None, None])


def test_the_term_is_added_to_eq_1_and_its_gradient_pulls_the_filters_apart():
    torch.manual_seed(0)
    model = build_model(TINY).train()
    x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    torch.manual_seed(1)
    loss, parts, output = training_loss(model, x, y, decorrelation=2.0)
    eq1, eq1_parts = weighted_loss(output, y, None)
    term = 2.0 * float(filter_correlation(output.filters).detach())
    assert term > 0 and len(parts) == len(eq1_parts) + 1 and parts[-1] == pytest.approx(term)
    assert float(loss) == pytest.approx(float(eq1) + term)
    torch.manual_seed(1)
    assert training_loss(model, x, y)[1] == pytest.approx(eq1_parts)  # D = 0: Eq. 1 alone, no part added

    # descending the term alone lowers the filters' correlation: the gradient reaches network 1
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = float(filter_correlation(model(x).filters).detach())
    for _ in range(30):
        optimizer.zero_grad()
        (filter_correlation(model(x).filters)).backward()
        optimizer.step()
    after = float(filter_correlation(model(x).filters).detach())
    assert after < before / 4, (before, after)


def test_a_plain_unet_or_a_negative_weight_is_refused_with_what_to_set():
    with pytest.raises(SettingsError, match="filter_decorrelation must be 0"):
        TrainConfig(filter_decorrelation=-0.5)
    with pytest.raises(SettingsError, match="filter_decorrelation must be 0"):
        TrainConfig(filter_decorrelation=float("inf"))
    image = np.random.default_rng(0).random((1, 32, 32), dtype=np.float32)
    item = LabeledImage(image, (image[0] > 0.5).astype(np.int64))
    settings = TrainConfig(
        epochs=1, steps_per_epoch=1, batch_size=2, patch_size=32, device="cpu", filter_decorrelation=1.0
    )
    plain = ModelInfo(ModelConfig(num_classes=2, width=4, depth=2, architecture="unet"), ["a", "b"])
    with pytest.raises(SettingsError, match="needs a CellPrep model.*set it to 0"):
        train([item], None, plain, settings)
    torch.manual_seed(0)
    unet = build_model(plain.config)
    with pytest.raises(ValueError, match="no translation filters"):
        training_loss(
            unet, torch.from_numpy(image)[None], torch.zeros(1, 32, 32, dtype=torch.long), decorrelation=1.0
        )


def test_training_reports_the_term_and_the_cli_flag_reaches_the_checkpoint(tmp_path):
    image, mask = disks(0, (64, 64))
    item = LabeledImage((image[None] / image.max()).astype(np.float32), mask.astype(np.int64))
    settings = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": 32, "device": "cpu"}
    result = train(
        [item], None, ModelInfo(TINY, ["a", "b"]), TrainConfig(**settings, filter_decorrelation=3.0)
    )
    losses = result.history[0].losses
    assert list(losses)[-1] == "decorrelation" and 0 < losses["decorrelation"] <= 3.0
    assert result.model.info.training["filter_decorrelation"] == 3.0
    off = train([item], None, ModelInfo(TINY, ["a", "b"]), TrainConfig(**settings))
    assert (
        "decorrelation" not in off.history[0].losses and off.model.info.training["filter_decorrelation"] == 0
    )

    images, masks = tmp_path / "images", tmp_path / "masks"
    for k in range(2):
        image, mask = disks(k, (64, 64))
        write_image(images / f"cell{k}.tif", image)
        write_image(masks / f"cell{k}.png", mask)
    out = tmp_path / "apart.cellprep"
    argv = f"train --images {images} --masks {masks} --width 4 --depth 2 --batch-size 2 --patch-size 32 "
    argv += (
        f"--epochs 1 --steps-per-epoch 1 --val-fraction 0 --device cpu --filter-decorrelation 0.5 --out {out}"
    )
    code = cli.main(argv.split())
    assert code == 0 and read_info(out).training["filter_decorrelation"] == 0.5
