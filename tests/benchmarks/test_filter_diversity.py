"""benchmarks/paper/filter_diversity.py: how alike a CellPrep model's translated images are."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.paper import filter_diversity


def test_pairwise_correlations_of_alike_opposite_and_constant_maps():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 16))
    stack = np.stack([a, 2 * a + 1, -a, np.ones_like(a)])
    r = filter_diversity._correlations(stack)  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    np.testing.assert_allclose(r, [1, -1, 0, -1, 0, 0], atol=1e-12)
    b = rng.normal(size=(16, 16))
    np.testing.assert_allclose(
        filter_diversity._correlations(np.stack([a, b])), np.corrcoef(a.ravel(), b.ravel())[0, 1]
    )


def test_it_prints_each_models_correlations_and_refuses_a_plain_unet(tiny_checkpoint, tmp_path, capsys):
    from napari_cellprep.engine.checkpoint import ModelInfo, save_checkpoint
    from napari_cellprep.engine.images.io import write_image
    from napari_cellprep.model import ModelConfig, build_model

    image = write_image(tmp_path / "im.tif", np.random.default_rng(1).random((40, 48)).astype(np.float32))
    assert filter_diversity.main([str(tiny_checkpoint), "--images", str(image), "--crop", "32"]) == 0
    mean = capsys.readouterr().out.splitlines()[-1]
    assert mean.startswith("tiny.cellprep mean over 1 image(s): filters r = ")
    values = [float(part.split("r = ")[1]) for part in mean.split(";")]  # one pair each: 2 classes
    assert len(values) == 2 and all(-1 <= v <= 1 for v in values)

    config = ModelConfig(architecture="unet", num_classes=2, width=4, depth=2)
    plain = save_checkpoint(tmp_path / "plain.cellprep", build_model(config), ModelInfo(config, ["a", "b"]))
    with pytest.raises(SystemExit):
        filter_diversity.main([str(plain), "--images", str(image)])
    assert "has no translation filters" in capsys.readouterr().err
