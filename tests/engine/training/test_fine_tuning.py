"""Fine-tuning settings: BatchNorm statistics re-estimated on the new image, then frozen."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_cellprep.engine.checkpoint import LoadedModel, ModelInfo
from napari_cellprep.engine.errors import SettingsError
from napari_cellprep.engine.images.normalize import Normalization
from napari_cellprep.engine.training.data import from_mask
from napari_cellprep.engine.training.loop import TrainConfig, adapt_batch_norm, initial_model, train
from napari_cellprep.model import ModelConfig, build_model


def _norm_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def _two_class_case(seed: int) -> tuple[np.ndarray, np.ndarray, LoadedModel]:
    """A 48² noise image, its thresholded mask and a tiny 2-class model (same weights each call)."""
    image = np.random.default_rng(seed).random((48, 48)).astype(np.float32)
    config = ModelConfig(num_classes=2, width=4, depth=2)
    torch.manual_seed(0)
    model = LoadedModel(build_model(config).eval(), ModelInfo(config, ["a", "b"]))
    return image, (image > 0.5).astype(np.uint8), model


def test_adapting_batch_norm_averages_the_statistics_of_the_batches():
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1))
    batches = [torch.full((2, 1, 4, 4), 3.0), torch.full((2, 1, 4, 4), 7.0)]
    adapt_batch_norm(model, iter(batches))
    norm = model[0]
    assert float(norm.running_mean) == pytest.approx(5.0)  # plain average, not a momentum blend
    assert float(norm.running_var) == pytest.approx(0.0)
    assert norm.momentum == 0.1 and not model.training


def test_frozen_norm_adapts_the_statistics_once_then_keeps_them_and_still_learns():
    image, mask, init = _two_class_case(0)
    before = _norm_state(init.model)
    weights_before = init.model.head2.weight.detach().clone()
    items = [from_mask(image, mask, Normalization())]

    def run(steps: int, freeze: bool) -> torch.nn.Module:
        settings = TrainConfig(
            epochs=1, steps_per_epoch=steps, batch_size=2, patch_size=32, device="cpu", freeze_norm=freeze
        )
        return train(items, None, init.info, settings, init=init).model.model

    one, three = run(1, True), run(3, True)
    assert all(
        torch.equal(one.state_dict()[k], three.state_dict()[k]) for k in before
    )  # fixed while training
    assert not torch.equal(
        one.state_dict()["net1.encoders.0.0.1.running_mean"], before["net1.encoders.0.0.1.running_mean"]
    )
    assert not torch.equal(three.head2.weight, weights_before) and not torch.equal(
        three.head2.weight, one.head2.weight
    )
    moving = run(3, False)
    assert not torch.equal(
        moving.state_dict()["net1.encoders.0.0.1.running_mean"],
        three.state_dict()["net1.encoders.0.0.1.running_mean"],
    )


def test_fine_tuning_has_its_own_defaults_and_what_is_given_wins():
    from napari_cellprep.engine.training.plan import (
        DEFAULT_VAL_FRACTION,
        FINE_TUNE_DEFAULTS,
        default_val_fraction,
        training_settings,
    )

    fresh, tuned = training_settings(False), training_settings(True)
    assert fresh == TrainConfig()
    assert all(getattr(tuned, key) == value for key, value in FINE_TUNE_DEFAULTS.items())
    assert (tuned.batch_size, tuned.steps_per_epoch) == (4, 10) != (fresh.batch_size, fresh.steps_per_epoch)
    assert tuned.epochs == fresh.epochs and tuned.augment == fresh.augment  # the rest is shared
    assert training_settings(True, learning_rate=0.01).learning_rate == 0.01
    assert (default_val_fraction(False), default_val_fraction(True)) == (DEFAULT_VAL_FRACTION, 0.0)


def test_adapted_norm_is_announced_first_shown_at_epoch_zero_then_trained_on():
    from napari_cellprep.engine.events import EpochEnd, NormAdapted, StepEnd
    from napari_cellprep.engine.training.live import PreviewReady, training_job
    from napari_cellprep.engine.training.recipe import RunPlan

    image, mask, init = _two_class_case(1)
    before = _norm_state(init.model)
    items = [from_mask(image, mask, init.info.normalization)]
    settings = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, patch_size=32, device="cpu", adapt_norm=True)
    events = list(training_job(RunPlan(init.info, settings, tuple(items), init=init), preview=image))
    kinds = [type(e) for e in events]
    assert kinds[:2] == [NormAdapted, PreviewReady] and events[1].epoch == 0
    assert kinds[2:] == [StepEnd, StepEnd, EpochEnd, PreviewReady] and events[-1].epoch == 1
    adapted = _norm_state(events[0].model.model)
    first = "net1.encoders.0.0.1.running_mean"
    assert not torch.equal(adapted[first], before[first])  # re-estimated on the new image
    assert not events[0].model.model.training
    trained = _norm_state(events[4].best_model.model)
    assert not torch.equal(trained[first], adapted[first])  # not frozen: training moves them on
    plain = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, patch_size=32, device="cpu")
    unadapted = training_job(RunPlan(init.info, plain, tuple(items), init=init))
    assert not any(isinstance(e, NormAdapted) for e in unadapted)


def test_fresh_heads_learn_at_their_own_rate_when_the_class_count_changes():
    from napari_cellprep.engine.training.plan import model_to_train

    image, _, init = _two_class_case(2)
    mask = np.digitize(image, [0.33, 0.66]).astype(np.uint8)  # three classes
    info = model_to_train(3, 1, init=init, class_names=["a", "b", "c"])
    items = [from_mask(image, mask, Normalization())]

    def one_step(fresh_lr):
        settings = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, patch_size=32, device="cpu",
                               learning_rate=1e-4, fresh_learning_rate=fresh_lr)
        return train(items, None, info, settings, init=init).model.model

    slow, fast = one_step(None), one_step(1e-2)
    copied = "net1.encoders.0.0.0.weight"
    assert torch.equal(slow.state_dict()[copied], fast.state_dict()[copied])  # copied weights: the same rate
    fresh = initial_model(info.config, 0).head2.weight  # both runs start their new heads from this
    step_slow = float((slow.head2.weight - fresh).abs().max())
    step_fast = float((fast.head2.weight - fresh).abs().max())
    assert step_slow == pytest.approx(1e-4, rel=0.05) and step_fast == pytest.approx(1e-2, rel=0.05)  # Adam's first step
    with pytest.raises(SettingsError, match="fresh_learning_rate must be positive"):
        TrainConfig(fresh_learning_rate=0)


def test_selecting_on_strokes_never_keeps_an_epoch_that_fits_them_worse():
    image, mask, init = _two_class_case(3)
    items = [from_mask(image, mask, Normalization())]
    settings = TrainConfig(epochs=4, steps_per_epoch=2, batch_size=2, patch_size=32, device="cpu",
                           learning_rate=0.05, select_on_strokes=True)  # a rate that makes some epochs worse
    result = train(items, None, init.info, settings, init=init)
    from napari_cellprep.engine.training.scoring import scoring_windows, validation_scores

    windows = scoring_windows(items, init.info.config.size_multiple)
    start = validation_scores(init.model, init.info, windows).miou
    bar = start
    for event in result.history:  # kept only when at least as good on the strokes as the best so far
        assert event.improved == (event.val_miou >= bar)
        bar = max(bar, event.val_miou)
        assert event.best_miou == bar
    assert result.best_miou == bar
    assert validation_scores(result.model.model, init.info, windows).miou == pytest.approx(bar)
    assert any(not e.improved for e in result.history)  # the high rate did make an epoch worse
    assert result.model.info.training["select_on_strokes"] is True
    assert {e.scored_on for e in result.history} == {"painted"}  # what the dock and CLI call the score


def test_refreshed_norm_changes_only_the_running_statistics_to_an_adabn_estimate_each_epoch():
    from napari_cellprep.engine.events import StepEnd
    from napari_cellprep.engine.training.data import PatchSampler
    from napari_cellprep.engine.training.loop import REFRESH_BATCHES, train_iter

    image, mask, init = _two_class_case(3)
    items = [from_mask(image, mask, Normalization())]

    def run(refresh: bool):
        config = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=2, patch_size=32, device="cpu",
                             refresh_norm=refresh, seed=5)
        job = train_iter(items, None, init.info, config, init=init)
        losses = []
        while True:
            try:
                event = next(job)
            except StopIteration as end:
                return config, losses, end.value.model.model
            if isinstance(event, StepEnd):
                losses.append(event.loss)

    config, plain_losses, plain = run(False)
    _, refreshed_losses, refreshed = run(True)
    assert refreshed_losses == plain_losses  # training normalises by batch statistics either way
    running = {k for k in plain.state_dict() if "running_" in k or "num_batches" in k}
    for key, value in plain.state_dict().items():
        if key not in running:
            assert torch.equal(value, refreshed.state_dict()[key]), key
    # the kept (last) epoch's statistics are AdaBN over the refresher's batches of that epoch
    expected = init.model.__class__(init.info.config)
    expected.load_state_dict(plain.state_dict())
    sampler = PatchSampler(items, config.patch_size, np.random.default_rng([config.seed, 1]), config.augment)
    batches = [sampler.sample(config.batch_size)[0] for _ in range(config.epochs * REFRESH_BATCHES)]
    adapt_batch_norm(expected, (torch.from_numpy(b) for b in batches[-REFRESH_BATCHES:]))
    first = "net1.encoders.0.0.1.running_mean"
    assert torch.allclose(refreshed.state_dict()[first], expected.state_dict()[first], atol=1e-6)
    assert not torch.allclose(refreshed.state_dict()[first], plain.state_dict()[first], atol=1e-4)


def test_fitting_fresh_heads_moves_only_them_and_fits_the_painted_pixels():
    from napari_cellprep.engine.training.data import PatchSampler
    from napari_cellprep.engine.training.head_fit import fit_heads, fresh_head_parameters
    from napari_cellprep.engine.training.plan import model_to_train, transfer_weights
    from napari_cellprep.model.loss import method_loss

    _, _, init = _two_class_case(3)
    mask = ((np.arange(64)[None, :] // 8) % 3).repeat(64, axis=0).astype(np.uint8)  # three classes: new heads
    image = (np.array([0.1, 0.5, 0.9])[mask] + np.random.default_rng(0).normal(0, 0.05, mask.shape)).astype(np.float32)
    info = model_to_train(3, 1, init=init, class_names=["a", "b", "c"])
    model = initial_model(info.config, 0)
    copied = transfer_weights(model, init)
    params = fresh_head_parameters(model, copied)
    fitted = {name for name, p in model.named_parameters() if any(p is q for q in params)}
    assert fitted and all(name.startswith(("head1.", "head2.", "ensemble")) for name in fitted)
    assert fresh_head_parameters(model, []) == []  # training afresh: nothing to fit first
    sampler = PatchSampler([from_mask(image, mask, Normalization())], 32, np.random.default_rng(0), False)
    batches = [tuple(torch.from_numpy(a) for a in sampler.sample(4)[:2]) for _ in range(2)]
    adapt_batch_norm(model, [x for x, _ in batches])  # as fine-tuning does first
    with torch.no_grad():
        start = float(sum(method_loss(model(x), y)[0] for x, y in batches)) / 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    end = fit_heads(model, params, batches)
    assert end < 0.85 * start  # a random tiny trunk: the heads alone still fit the labels far better
    with torch.no_grad():
        accuracy = np.mean([float((model(x).ensemble_logits.argmax(1) == y).float().mean()) for x, y in batches])
    assert accuracy > 0.6  # chance: 1/3
    after = model.state_dict()
    for name, old in before.items():
        changed = not torch.equal(old, after[name])
        assert changed == (name in fitted), name  # the trunk (weights and statistics) is untouched
    assert all(p.requires_grad for p in model.parameters())


def test_fit_heads_runs_before_the_first_step_and_is_recorded():
    from napari_cellprep.engine.training.plan import model_to_train

    image, _, init = _two_class_case(2)
    mask = np.digitize(image, [0.33, 0.66]).astype(np.uint8)
    info = model_to_train(3, 1, init=init, class_names=["a", "b", "c"])
    items = [from_mask(image, mask, Normalization())]
    settings = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, patch_size=32, device="cpu", fit_heads=True)
    training = train(items, None, info, settings, init=init).model.info.training
    assert training["fit_heads"] is True and training["head_fit_loss"] > 0
    two = [from_mask(image, (mask > 0).astype(np.uint8), Normalization())]
    same_classes = train(two, None, init.info, settings, init=init).model.info.training  # nothing fresh
    assert same_classes["head_fit_loss"] is None
    refit = replace(settings, fit_copied_heads=True)
    copied_fitted = train(two, None, init.info, refit, init=init).model.info.training  # the copied heads too
    assert copied_fitted["fit_copied_heads"] is True and copied_fitted["head_fit_loss"] > 0


def _bfloat16_case(steps: int):
    """An image, its training items, a tiny model and one epoch of ``steps`` with ``cpu_bfloat16``."""
    image, mask, init = _two_class_case(2)
    settings = TrainConfig(
        epochs=1, steps_per_epoch=steps, batch_size=2, patch_size=32, device="cpu", cpu_bfloat16=True
    )
    return image, [from_mask(image, mask, Normalization())], init, settings


def test_cpu_bfloat16_trains_under_autocast_only_where_the_cpu_has_it(monkeypatch):
    from napari_cellprep.engine import devices
    from napari_cellprep.engine.training import loop as training_module

    _, items, init, settings = _bfloat16_case(steps=2)
    seen = []
    real = training_module.training_loss

    def spy(model, x, *args):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return real(model, x, *args)

    monkeypatch.setattr(training_module, "training_loss", spy)
    for native in (True, False):
        monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda native=native: native)
        seen.clear()
        result = train(items, None, init.info, settings, init=init)
        assert seen == [native, native] and result.model.info.training["cpu_bfloat16"] is native
        assert all(p.dtype == torch.float32 for p in result.model.model.parameters())  # the weights stay float32
        assert np.isfinite(result.history[-1].train_loss)
    off = train(items, None, init.info, replace(settings, cpu_bfloat16=False), init=init)
    assert off.model.info.training["cpu_bfloat16"] is False


def test_the_live_preview_runs_in_the_precision_of_the_steps(monkeypatch):
    from napari_cellprep.engine import devices
    from napari_cellprep.engine.training import live as train_job
    from napari_cellprep.engine.training.recipe import RunPlan

    image, items, init, settings = _bfloat16_case(steps=1)
    asked = []
    real = train_job.predict
    monkeypatch.setattr(train_job, "predict", lambda *a, **k: asked.append(k["precision"]) or real(*a, **k))
    for native, precision in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda native=native: native)
        asked.clear()
        plan = RunPlan(init.info, settings, tuple(items), init=init)
        events = list(train_job.training_job(plan, preview=image))
        shown = [e for e in events if isinstance(e, train_job.PreviewReady)]
        assert shown and asked == [precision] * len(shown) and set(np.unique(shown[-1].labels)) <= {0, 1}


def test_average_weights_keeps_a_moving_average_of_the_steps():
    from napari_cellprep.engine.training.loop import _average_into

    model = torch.nn.Linear(2, 1)
    averaged = torch.nn.Linear(2, 1)
    with torch.no_grad():
        averaged.weight.fill_(1.0), model.weight.fill_(3.0)
    _average_into(averaged, model, 0.75)
    assert torch.allclose(averaged.weight, torch.full_like(averaged.weight, 1.5))  # 0.75·1 + 0.25·3

    image, mask, init = _two_class_case(2)
    items = [from_mask(image, mask, Normalization())]
    settings = TrainConfig(epochs=2, steps_per_epoch=2, batch_size=2, patch_size=32, device="cpu", average_weights=0.5)
    plain = train(items, None, init.info, replace(settings, average_weights=0.0), init=init).model.model.state_dict()
    result = train(items, None, init.info, settings, init=init)
    kept = result.model.model.state_dict()
    assert result.model.info.training["average_weights"] == 0.5
    name = next(k for k in kept if k.endswith("weight") and kept[k].dim() == 4)
    assert not torch.allclose(kept[name], plain[name])  # the kept model is the average, not the last weights
    start = init.model.state_dict()[name]  # the average lies between the start and the last weights
    assert float((kept[name] - start).abs().sum()) < float((plain[name] - start).abs().sum())
    with pytest.raises(SettingsError, match="average_weights"):
        TrainConfig(average_weights=1.0)
