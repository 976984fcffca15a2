import numpy as np
import pytest
import torch

from napari_cellprep.engine.checkpoint import LoadedModel, ModelInfo
from napari_cellprep.engine.errors import SettingsError
from napari_cellprep.engine.events import Progress
from napari_cellprep.engine.images.normalize import Normalization, normalize_channels
from napari_cellprep.engine.prediction.inference import OUTPUTS, predict, predict_block, predict_iter
from napari_cellprep.model import ModelConfig, build_model

RNG = np.random.default_rng(0)


def textured(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth blobs plus noise, float32 in 0..1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    base = 0.5 + 0.25 * np.sin(yy / 7.0) * np.cos(xx / 5.0)
    return np.clip(base + rng.normal(0, 0.15, shape), 0, 1).astype(np.float32)


def tiny_model(architecture: str = "cellprep", in_channels: int = 1, seed: int = 0) -> LoadedModel:
    """A width-4, depth-2 random-init model whose BatchNorm statistics are set from one image,
    so that activations keep unit scale and outputs vary strongly across the image (with
    PyTorch's default running statistics a random network's output is nearly constant)."""
    torch.manual_seed(seed)
    # transposed-conv upsampling, max pooling: the receptive radii in engine/prediction/inference.py's notes hold
    config = ModelConfig(
        architecture=architecture, in_channels=in_channels, width=4, depth=2, upsample="transpose", downsample="max"
    )
    model = build_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(textured((1, in_channels, 96, 96), seed + 1)))
    return LoadedModel(model.eval(), ModelInfo(config, ["background", "cell"]))


@pytest.fixture(scope="module")
def cellprep() -> LoadedModel:
    return tiny_model("cellprep")


@pytest.fixture(scope="module")
def unet() -> LoadedModel:
    return tiny_model("unet")


def whole_pass(loaded: LoadedModel, image: np.ndarray) -> dict[str, np.ndarray]:
    """Reference: the network on the whole normalised image, no tiling code involved."""
    x = torch.from_numpy(normalize_channels(image[None], loaded.info.normalization)[None])
    with torch.no_grad():
        out = loaded.model(x)
    ref = {
        "probabilities": torch.softmax(out.ensemble_logits, 1)[0].numpy(),
        "branch_probabilities": torch.softmax(out.branch_logits, 2)[0].numpy(),
    }
    if out.filters is not None:
        ref["filters"] = out.filters[0].numpy()
        ref["translated"] = out.translated[0].numpy()
    return ref


def receptive_radius(loaded: LoadedModel) -> int:
    """How far (in pixels) input changes reach an output pixel, measured by gradients."""
    x = torch.from_numpy(textured((1, 1, 256, 256), 5)).requires_grad_(True)
    loaded.model(x).ensemble_logits[0, :, 128, :].sum().backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1) > 0)[:, 0]
    loaded.model.zero_grad()
    return int(max(128 - rows.min(), rows.max() - 128))


@pytest.mark.parametrize("architecture, tile, overlap", [("cellprep", 256, 192), ("unet", 192, 96)])
def test_tiled_prediction_equals_one_whole_image_pass(architecture, tile, overlap):
    loaded = tiny_model(architecture)
    assert receptive_radius(loaded) <= overlap // 4  # the condition under which tiling is exact
    image = textured((330, 397))  # several tiles each way; the width is not a multiple of 4
    tiled = predict(loaded, image, tile=tile, overlap=overlap, batch_size=3)
    ref = whole_pass(loaded, image)
    assert ref["probabilities"].std() > 0.05  # the model's output really varies
    np.testing.assert_allclose(tiled.probabilities, ref["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(tiled.labels, ref["probabilities"].argmax(0))
    if architecture == "cellprep":
        for key in ("filters", "translated", "branch_probabilities"):
            np.testing.assert_allclose(getattr(tiled, key), ref[key], atol=1e-5)
        top2 = np.sort(ref["branch_probabilities"], axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-4  # argmax of a near-tie may flip with float rounding
        assert clear.mean() > 0.999
        np.testing.assert_array_equal(tiled.branch_labels[clear], ref["branch_probabilities"].argmax(1)[clear])
    # control: with overlap/4 below the receptive radius, tile borders do show
    rough = predict(loaded, image, tile=tile, overlap=overlap // 3)
    assert np.abs(rough.probabilities - ref["probabilities"]).max() > 1e-4


def test_a_long_thin_image_tiles_exactly_along_its_long_axis(unet):
    """Many tiles along one axis, one (smaller than a tile) along the other: still a whole pass."""
    image = textured((52, 3001), 3)
    tiled = predict(unet, image, tile=192, overlap=96, batch_size=8)
    ref = whole_pass(unet, image)
    assert tiled.labels.shape == (52, 3001)
    np.testing.assert_allclose(tiled.probabilities, ref["probabilities"], atol=1e-5)


def test_gray_image_shapes_dtypes_and_disagreement(cellprep):
    image = textured((70, 90))
    p = predict(cellprep, image, tile=64, overlap=32)
    assert p.labels.shape == (70, 90) and p.labels.dtype == np.uint8
    assert p.probabilities.shape == (2, 70, 90) and p.probabilities.dtype == np.float32
    np.testing.assert_allclose(p.probabilities.sum(0), 1.0, atol=1e-5)
    assert p.filters.shape == (2, 70, 90) and p.filters.min() >= 0  # ReLU maps
    assert p.translated.shape == (2, 1, 70, 90)
    assert p.branch_probabilities.shape == (3, 2, 70, 90) and p.branch_labels.shape == (3, 70, 90)
    assert p.branch_labels.dtype == np.uint8
    expected = 0.5 * np.abs(p.branch_probabilities - p.probabilities).sum(1).mean(0)
    np.testing.assert_allclose(p.disagreement, expected, atol=1e-6)
    assert p.disagreement.dtype == np.float32 and 0 <= p.disagreement.min() and p.disagreement.max() <= 1
    assert p.disagreement.max() > 0.01
    assert p.ensemble_weights.shape == (3,)
    assert len(p.output_names) == 3 and p.class_names == ["background", "cell"]
    assert p.device.startswith("cpu")


def test_rgb_channel_last_and_channel_first_agree():
    loaded = tiny_model("cellprep", in_channels=3)
    rgb = np.stack([textured((72, 80), s) for s in range(3)], axis=-1)
    p = predict(loaded, rgb, tile=64, overlap=32)
    assert p.labels.shape == (72, 80) and p.translated.shape == (2, 3, 72, 80)
    q = predict(loaded, np.moveaxis(rgb, -1, 0), channel_axis=0, tile=64, overlap=32)
    np.testing.assert_array_equal(p.labels, q.labels)
    np.testing.assert_allclose(p.probabilities, q.probabilities, atol=1e-6)


def test_z_stack_is_predicted_plane_by_plane_with_progress(cellprep):
    stack = np.stack([textured((64, 128), s) for s in range(3)])
    steps = predict_iter(cellprep, stack, tile=64, overlap=32, batch_size=2)
    events = []
    while True:
        try:
            events.append(next(steps))
        except StopIteration as finished:
            p = finished.value
            break
    assert p.labels.shape == (3, 64, 128) and p.probabilities.shape == (3, 2, 64, 128)
    assert p.translated.shape == (3, 2, 1, 64, 128) and p.branch_probabilities.shape == (3, 3, 2, 64, 128)
    assert p.disagreement.shape == (3, 64, 128)
    # 1 × 3 tiles of 64 per plane, batches of 2: two events per plane
    assert all(isinstance(e, Progress) for e in events)
    assert [e.done for e in events] == list(range(1, 7)) and {e.total for e in events} == {6}
    planes = [e.message.split(":")[0] for e in events]
    assert planes == ["plane 1/3"] * 2 + ["plane 2/3"] * 2 + ["plane 3/3"] * 2
    single = predict(cellprep, stack[1], tile=64, overlap=32)
    np.testing.assert_array_equal(p.labels[1], single.labels)
    np.testing.assert_allclose(p.probabilities[1], single.probabilities, atol=1e-5)


def test_integer_and_float_inputs_encoding_the_same_image_agree(cellprep):
    u8 = (textured((64, 80)) * 255).round().astype(np.uint8)
    u8[0, 0], u8[-1, -1] = 0, 255
    results = [
        predict(cellprep, image, tile=64, overlap=32)
        for image in (u8, u8.astype(np.uint16) * 257, u8 / 255.0 * 3.0 - 1.0)
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(other.labels, results[0].labels)
        np.testing.assert_allclose(other.probabilities, results[0].probabilities, atol=1e-5)


def test_image_smaller_than_a_tile_is_one_pass(cellprep):
    image = textured((37, 50))
    p = predict(cellprep, image, tile=256, overlap=64)
    ref = whole_pass(cellprep, image)
    assert p.labels.shape == (37, 50)
    np.testing.assert_allclose(p.probabilities, ref["probabilities"], atol=1e-5)
    np.testing.assert_allclose(p.translated, ref["translated"], atol=1e-5)


def test_outputs_subset_leaves_the_rest_none(cellprep):
    image = textured((64, 64))
    everything = predict(cellprep, image, tile=64, overlap=32)
    only = predict(cellprep, image, tile=64, overlap=32, outputs=["probabilities"])
    assert only.filters is None and only.translated is None
    assert only.branch_probabilities is None and only.branch_labels is None and only.disagreement is None
    np.testing.assert_array_equal(only.probabilities, everything.probabilities)
    bare = predict(cellprep, image, tile=64, overlap=32, outputs=())
    assert bare.probabilities is None
    np.testing.assert_array_equal(bare.labels, everything.labels)
    with pytest.raises(ValueError, match="unknown outputs"):
        predict(cellprep, image, outputs=["logits"])


def test_plain_unet_has_no_filters_or_branches(unet):
    p = predict(unet, textured((64, 64)), tile=64, overlap=32, outputs=OUTPUTS)
    assert p.filters is None and p.translated is None and p.branch_probabilities is None
    assert p.disagreement is None
    assert p.probabilities.shape == (2, 64, 64) and p.ensemble_weights.shape == (1,)


def test_clear_errors_for_bad_input(cellprep):
    rgb_model = tiny_model("cellprep", in_channels=3)
    with pytest.raises(ValueError, match="expects 3 channels"):
        predict(rgb_model, textured((64, 64)))
    with pytest.raises(ValueError, match="expects 3 channels"):
        predict(rgb_model, textured((2, 64, 64)), channel_axis=0)
    with pytest.raises(ValueError, match="smaller overlap"):
        predict(cellprep, textured((64, 64)), tile=64, overlap=64)
    with pytest.raises(ValueError, match="dtype"):
        predict(cellprep, np.zeros((64, 64), complex))


def test_rgb_and_rgba_images_follow_the_layout_rule(cellprep):
    """A one-channel model reads the mean of the colours (alpha dropped); RGBA is RGB."""
    rgb = textured((64, 64, 3))
    rgba = np.concatenate([rgb, np.full((64, 64, 1), 7.0, rgb.dtype)], axis=-1)
    gray = predict(cellprep, rgb.mean(axis=-1, dtype=np.float32), outputs=("filters",))
    for image in (rgb, rgba):
        colour = predict(cellprep, image, outputs=("filters",))
        np.testing.assert_array_equal(colour.labels, gray.labels)
        np.testing.assert_allclose(colour.filters, gray.filters, atol=1e-6)
    three = tiny_model("cellprep", in_channels=3)
    np.testing.assert_array_equal(predict(three, rgba).labels, predict(three, rgb).labels)
    stack = np.moveaxis(rgb, -1, 0)  # (3, Y, X): found as the channel axis of a 3-channel model
    np.testing.assert_array_equal(predict(three, stack).labels, predict(three, rgb).labels)


def test_the_model_itself_is_left_untouched_and_blocks_need_eval_mode():
    loaded = tiny_model("cellprep")
    loaded.model.train()
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    predict(loaded, textured((64, 64)), tile=64, overlap=32)
    assert loaded.model.training
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(v.is_contiguous() for v in after.values())  # not switched to channels-last
    with pytest.raises(ValueError, match="eval"):
        predict_block(loaded.model, textured((1, 64, 64)))


def test_predict_block_is_the_network_on_a_block(cellprep):
    image = textured((64, 64))
    block = normalize_channels(image[None], Normalization())
    out = predict_block(cellprep.model, block, outputs=["branches"])
    ref = whole_pass(cellprep, image)
    assert set(out) == {"probabilities", "branch_probabilities"}
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=1e-6)
    batched = predict_block(cellprep.model, np.stack([block, block]), outputs=["filters"])
    assert batched["filters"].shape == (2, 2, 64, 64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision, tol, agree", [("float32", 1e-2, 0.99), ("bfloat16", 0.1, 0.95)])
def test_cuda_matches_cpu(precision, tol, agree):
    """CUDA convolutions may use TF32 (10-bit mantissa), hence the percent-level tolerance."""
    image = textured((200, 264))
    cpu = predict(tiny_model("cellprep"), image, tile=128, overlap=64, device="cpu")
    gpu = predict(tiny_model("cellprep"), image, tile=128, overlap=64, device="cuda", precision=precision)
    assert gpu.device.startswith("cuda")
    for key in ("probabilities", "filters", "translated", "branch_probabilities"):
        np.testing.assert_allclose(getattr(gpu, key), getattr(cpu, key), rtol=tol, atol=tol)
    assert (gpu.labels == cpu.labels).mean() >= agree


def test_the_cpu_is_described_with_its_thread_count():
    from napari_cellprep.engine.devices import describe_device

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device(torch.device("cpu")) == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == "cpu (2 threads)"
    finally:
        torch.set_num_threads(before)


def test_float32_runs_without_autocast_and_each_precision_is_recorded(cellprep, monkeypatch):
    """float32 (and "auto" where it resolves to float32) is the network without autocast, bit for bit
    what predict computed before precision choices existed; 16-bit runs under autocast to its type."""
    from napari_cellprep.engine import devices

    seen = []
    hook = cellprep.model.net1.register_forward_pre_hook(  # prepare_model's copy keeps the hook
        lambda *_: seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
    )
    try:
        image = textured((150, 170))
        monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset())
        reference = predict(cellprep, image, tile=128, overlap=32, outputs=OUTPUTS, precision="float32")
        auto = predict(cellprep, image, tile=128, overlap=32, outputs=OUTPUTS, precision="auto")
        assert set(seen) == {None} and reference.precision == auto.precision == "float32"
        for key in ("labels", "probabilities", "filters", "translated", "branch_probabilities"):
            np.testing.assert_array_equal(getattr(auto, key), getattr(reference, key))
        seen.clear()
        half = predict(cellprep, image, tile=128, overlap=32, precision="bfloat16")
        assert half.precision == "bfloat16" and set(seen) == {torch.bfloat16}
        assert (half.labels == reference.labels).mean() > 0.9  # the same segmentation, rounded
        seen.clear()
        monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda: True)
        monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset({("cpu", "bfloat16")}))
        assert predict(cellprep, image, tile=128, overlap=32, precision="auto").precision == "bfloat16"
        assert set(seen) == {torch.bfloat16}
    finally:
        hook.remove()
    with pytest.raises(SettingsError, match="precision"):
        predict(cellprep, image, precision="half")
