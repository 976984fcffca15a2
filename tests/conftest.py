"""Shared test setup. torch is imported before any Qt binding (napari tests load PyQt6), which
avoids clashes between their bundled libraries."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The labeled data sets: $CELLPREP_DATA, else ../shared/data beside the repository, else
    /work/shared/data (where the project's machines keep them); tests needing them skip without."""
    candidates = [os.environ.get("CELLPREP_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"]
    for root in (Path(c) for c in candidates if c):
        if (root / "nist-phase" / "images").is_dir():
            return root
    pytest.skip("labeled data not found (set CELLPREP_DATA to the folder holding nist-phase/)")


def disks(seed: int = 0, shape=(96, 96)) -> tuple[np.ndarray, np.ndarray]:
    """A noisy uint16 image of bright disks (like phase-contrast colonies) and its 0/1 mask.

    ``shape`` may have leading plane axes (a stack); the mask is that of the last two axes.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    mask = np.zeros(shape[-2:], np.uint8)
    for cy, cx in rng.integers(16, min(shape[-2:]) - 16, (4, 2)):
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = 1
    image = 1000.0 + 2000.0 * mask + rng.normal(0, 200, shape)
    return np.clip(image, 0, 65535).astype(np.uint16), mask


def rgb_disks(seed: int = 0) -> np.ndarray:
    """A 64² RGB uint8 image of the bright ``disks``, slightly tinted."""
    image, _ = disks(seed, (64, 64))
    gray = (image / image.max() * 255).astype(np.uint8)
    return np.stack([gray, gray, (gray * 0.8).astype(np.uint8)], axis=-1)


@pytest.fixture
def cells():
    """``cells(shape, seed)``: the image of ``disks`` alone."""
    return lambda shape=(96, 96), seed=0: disks(seed, shape)[0]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch on one thread during every test: tiny models gain nothing from more, and on a busy
    2-core machine a second thread makes them crawl; the other core stays with the Qt loop."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A tiny untrained CellPrep checkpoint (width 4, depth 2, classes background/colony)."""
    from napari_cellprep.engine.checkpoint import ModelInfo, save_checkpoint
    from napari_cellprep.model import ModelConfig, build_model

    config = ModelConfig(num_classes=2, width=4, depth=2, penultimate=None)
    torch.manual_seed(0)
    info = ModelInfo(config, ["background", "colony"], name="tiny")
    return save_checkpoint(tmp_path / "tiny.cellprep", build_model(config).eval(), info)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """A tiny CellPrep model trained for a few seconds to find bright disks (class 1 = colony)."""
    from napari_cellprep.engine.checkpoint import ModelInfo, save_checkpoint
    from napari_cellprep.engine.images.normalize import Normalization
    from napari_cellprep.engine.training.data import from_mask
    from napari_cellprep.engine.training.loop import TrainConfig, train
    from napari_cellprep.model import named_config

    items = [from_mask(*disks(seed), Normalization()) for seed in range(2)]
    # the paper's architecture with an equal-init ensemble: in these 48 steps the product default
    # (resize upsampling) learns the disks in train mode but its BatchNorm running statistics
    # lag, so the eval-mode model misses them
    config = named_config("paper", num_classes=2, width=4, depth=2, ensemble_init="equal")
    info = ModelInfo(config, ["background", "colony"], name="tiny trained")
    settings = TrainConfig(
        epochs=6, steps_per_epoch=8, batch_size=4, patch_size=32, learning_rate=1e-2, device="cpu"
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(items, None, info, settings)
    finally:
        torch.set_num_threads(before)
    return save_checkpoint(
        tmp_path_factory.mktemp("models") / "trained.cellprep", result.model.model, result.model.info
    )


@pytest.fixture
def registry(monkeypatch):
    """A fresh model registry (without the bundled default) shared by the widgets of one test."""
    from napari_cellprep._widgets import registry as module

    fresh = module.ModelRegistry(include_default=False)
    monkeypatch.setattr(module, "_registry", fresh)
    return fresh
