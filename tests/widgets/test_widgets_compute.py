"""The plugin's Qt-free parts: layer building, image input, registry, training data, sample data, reader."""

import numpy as np
import pytest
import tifffile
import torch

pytest.importorskip("napari")

from napari_cellprep._widgets import _sample_data  # noqa: E402
from napari_cellprep._widgets._reader import get_reader  # noqa: E402
from napari_cellprep._widgets.image_input import output_geometry  # noqa: E402
from napari_cellprep._widgets.layers import (  # noqa: E402
    MARKER,
    engine_outputs,
    is_output_of,
    robust_limits,
    segment_layers,
)
from napari_cellprep._widgets.registry import ModelRegistry  # noqa: E402
from napari_cellprep.engine import checkpoint  # noqa: E402
from napari_cellprep.engine.checkpoint import CheckpointError, LoadedModel, ModelInfo  # noqa: E402
from napari_cellprep.engine.events import Progress  # noqa: E402
from napari_cellprep.engine.images import io
from napari_cellprep.engine.images.layout import model_input  # noqa: E402
from napari_cellprep.engine.images.normalize import Normalization  # noqa: E402
from napari_cellprep.engine.training.data import TrainingDataError  # noqa: E402
from napari_cellprep.engine.training.live import painted_items, preview_window  # noqa: E402
from napari_cellprep.model import ModelConfig, build_model  # noqa: E402


def tiny(in_channels=1, architecture="cellprep", classes=("background", "colony")) -> LoadedModel:
    config = ModelConfig(
        num_classes=len(classes), in_channels=in_channels, architecture=architecture, width=4, depth=2
    )
    torch.manual_seed(0)
    return LoadedModel(build_model(config).eval(), ModelInfo(config, list(classes), name="tiny"))


def run(generator):
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as end:
            return events, end.value


def test_segment_layers_on_rgb_with_a_three_channel_model():
    rgb = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    events, layers = run(
        segment_layers(rgb, tiny(in_channels=3), source="rgb", rgb=True, scale=(2, 2), translate=(5, 0))
    )
    assert events and all(isinstance(e, Progress) for e in events) and events[-1].done == events[-1].total
    kinds = [(meta["metadata"][MARKER]["output"], kind) for _, meta, kind in layers]
    assert kinds == [("filter", "image")] * 2 + [("translated", "image")] * 2 + [("branch", "labels")] * 3 + [
        ("ensemble", "labels"),
        ("disagreement", "image"),
        ("cue", "shapes"),
    ]
    for _, meta, _ in layers:
        assert meta["scale"] == (2, 2) and meta["translate"] == (5, 0) and meta["name"].startswith("rgb | ")
    translated = layers[2]
    assert translated[0].shape == (64, 80, 3) and translated[1]["rgb"] is True
    assert all(data.shape == (64, 80) for data, meta, kind in layers if not meta.get("rgb") and kind != "shapes")


def test_plain_unet_gives_only_the_ensemble():
    image = np.random.default_rng(1).random((2, 48, 48)).astype(np.float32)
    _, layers = run(segment_layers(image, tiny(architecture="unet"), source="img"))
    assert [meta["name"] for _, meta, _ in layers] == ["img | ensemble"]
    assert layers[0][0].shape == (2, 48, 48) and layers[0][0].dtype == np.uint8
    provenance = layers[0][1]["metadata"][MARKER]
    assert provenance["output_names"] == ["unet"] and provenance["ensemble_weights"] == [1.0]


def test_only_the_ticked_outputs_are_computed_and_shown():
    image = np.random.default_rng(2).random((48, 48)).astype(np.float32)
    _, layers = run(segment_layers(image, tiny(), source="img", show=("disagreement",)))
    assert [meta["name"] for _, meta, _ in layers] == [
        "img | ensemble",
        "img | branch disagreement",
        "img | paint here next",
    ]
    assert engine_outputs(["filters"]) == ("filters",)
    assert engine_outputs(["disagreement", "translated"]) == ("disagreement", "translated")  # no branch maps
    with pytest.raises(ValueError, match="unknown outputs"):
        run(segment_layers(image, tiny(), source="img", show=("probabilities",)))


def test_model_input_and_geometry():
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 30
    gray, axis = model_input(rgba, 1, rgb=True)
    assert axis is None and gray.shape == (4, 5) and np.allclose(gray, 10.0)  # alpha dropped
    assert model_input(rgba, 3, rgb=True)[0].shape == (4, 5, 3)
    stack = np.zeros((7, 2, 8, 8))
    assert model_input(stack, 2, rgb=False)[1] == 1
    with pytest.raises(ValueError, match="expects 3 channels"):
        model_input(stack, 3, rgb=False)
    assert output_geometry((1, 2, 3, 4), (0, 1, 2, 3), 1, rgb=False) == {
        "scale": (1, 3, 4),
        "translate": (0, 2, 3),
    }
    assert output_geometry((3, 4), (2, 3), 2, rgb=True) == {"scale": (3, 4), "translate": (2, 3)}


def test_output_marker_and_robust_limits():
    marker = {MARKER: {"source": "a", "output": "ensemble"}}
    assert is_output_of("a | ensemble", marker, "a")
    assert not is_output_of("renamed", marker, "a")  # renamed by the user: theirs
    assert not is_output_of("a | ensemble", {}, "a")  # a user layer with our naming
    assert not is_output_of("b | ensemble", {MARKER: {"source": "b"}}, "a")
    data = np.zeros(10_000, np.float32)
    data[:100] = np.linspace(0, 1, 100)
    data[0] = 1000.0  # one hot pixel does not set the upper limit
    low, high = robust_limits(data)
    assert low == 0.0 and 0.4 < high < 1.0


def test_registry_default_files_and_trained(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(checkpoint.resources, "files", lambda _: tmp_path / "missing")
    assert ModelRegistry().entries == []  # no bundled model in this install: omitted, no crash
    bundled = tmp_path / "missing" / "models" / "default.cellprep"
    bundled.parent.mkdir(parents=True)
    bundled.write_bytes(tiny_checkpoint.read_bytes())
    registry = ModelRegistry()
    assert [(e.label, e.kind) for e in registry.entries] == [("tiny", "default")]
    changes = []
    registry.changed.connect(lambda: changes.append(1))
    entry = registry.add_file(tiny_checkpoint)
    assert registry.add_file(str(tiny_checkpoint)) is entry and len(changes) == 1  # no duplicates
    loaded = registry.load(entry)
    assert registry.load(entry) is loaded and not loaded.model.training
    trained = registry.add_trained(tiny())
    assert [e.label for e in registry.entries] == ["tiny", "tiny (tiny.cellprep)", "tiny (2)"]
    assert registry.add_trained(tiny()).label == "tiny (3)" and len(changes) == 3
    registry.mark_saved(trained, tmp_path / "x.cellprep")
    assert trained.loaded.path == tmp_path / "x.cellprep"
    foreign = tmp_path / "foreign.cellprep"
    foreign.write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        registry.add_file(foreign)
    assert get_reader(str(foreign)) is None and get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader([str(tiny_checkpoint), str(foreign)]) is None


def test_registry_preloads_in_the_background_and_keeps_errors_for_use(tmp_path, tiny_checkpoint):
    registry = ModelRegistry(include_default=False)
    entry = registry.add_file(tiny_checkpoint)
    thread = registry.preload(entry)
    thread.join(timeout=30)
    assert entry.loaded is not None and registry.load(entry) is entry.loaded
    assert registry.preload(entry) is None  # already in memory: nothing to do
    broken = tmp_path / "broken.cellprep"
    broken.write_bytes(tiny_checkpoint.read_bytes())
    damaged = registry.add_file(broken)
    broken.write_bytes(broken.read_bytes()[:100])  # damaged after it was registered
    registry.preload(damaged).join(timeout=30)  # no exception escapes the thread
    assert damaged.loaded is None
    with pytest.raises(CheckpointError):
        registry.load(damaged)  # the user sees the message when the model is used


def test_painted_items_from_a_stack_and_errors():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 4000, (3, 40, 40)).astype(np.uint16)
    labels = np.zeros(image.shape, np.uint8)
    labels[2, :10] = 1
    labels[2, 10:20] = 2
    common = dict(
        rgb=False, in_channels=1, normalization=Normalization(), class_names=["bg", "fg"], name="img"
    )
    items = painted_items(image, labels, **common)
    assert len(items) == 1 and items[0].name == "img plane (2,)"
    assert items[0].labeled_pixels == 800 and set(np.unique(items[0].target)) == {-1, 0, 1}
    assert items[0].image.shape == (1, 40, 40) and 0 <= items[0].image.min() and items[0].image.max() <= 1
    with pytest.raises(TrainingDataError, match=r"img: no labeled pixels.*\(label 1 = bg, label 2 = fg\)"):
        painted_items(image, np.zeros_like(labels), **common)
    with pytest.raises(TrainingDataError, match=r"img: the labels have shape \(40, 40\) but the image has \(3, 40, 40\)"):
        painted_items(image, labels[0], **common)
    rgb = rng.integers(0, 255, (40, 40, 3)).astype(np.uint8)
    rgb_items = painted_items(rgb, labels[2], **{**common, "rgb": True, "in_channels": 3})
    assert rgb_items[0].image.shape == (3, 40, 40)


def test_preview_window_is_bounded_and_inside():
    assert preview_window((100, 2000), (50, 1990), size=512) == (slice(0, 100), slice(1488, 2000))
    assert preview_window((1000, 1000), (500, 10), size=256) == (slice(372, 628), slice(0, 256))


def test_sample_data(tmp_path, monkeypatch):
    monkeypatch.setattr(io.resources, "files", lambda _: tmp_path)
    with pytest.raises(FileNotFoundError, match="lacks its samples"):
        _sample_data.nist_phase()
    (tmp_path / "samples").mkdir()
    for i in range(2):
        tifffile.imwrite(tmp_path / "samples" / f"tile{i}.tif", np.full((16, 16), i, np.uint16))
    [(data, meta, kind)] = _sample_data.nist_phase()
    assert kind == "image" and data.shape == (2, 16, 16) and data[1, 0, 0] == 1
    assert meta["name"] == "nist-phase (2 tiles)" and "NIST" in meta["metadata"]["source"]
