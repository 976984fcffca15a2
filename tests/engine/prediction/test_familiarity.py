"""Is an image like the model's training data? The engine's measure and the training summary."""

import numpy as np

from napari_cellprep.engine.prediction import familiarity as fam
from napari_cellprep.engine.prediction.familiarity import Familiarity, measure_familiarity, training_summary


def probabilities(top: float, shape=(2, 32, 32)) -> np.ndarray:
    """Two-class probabilities with ``top`` on class 1 everywhere."""
    p = np.empty(shape, np.float32)
    p[0], p[1] = 1 - top, top
    return p


def test_confident_agreeing_prediction_is_familiar():
    f = measure_familiarity(probabilities(0.98), np.full((32, 32), 0.05, np.float32))
    assert np.isclose(f.uncertainty, 0.02) and np.isclose(f.disagreement, 0.05)
    assert not f.unfamiliar and f.message("m") == ""


def test_unsure_ensemble_is_unfamiliar_and_says_what_to_do():
    f = measure_familiarity(probabilities(0.6), np.zeros((32, 32), np.float32))
    assert np.isclose(f.uncertainty, 0.4) and f.unfamiliar
    message = f.message("NIST model")
    assert "'NIST model'" in message and "unsure" in message and "disagree" not in message
    assert fam.NEXT_STEP in message


def test_disagreeing_branches_alone_make_it_unfamiliar():
    f = measure_familiarity(probabilities(0.99), np.full((32, 32), fam.DISAGREEMENT_LIMIT + 0.01))
    assert f.unfamiliar and f.reasons == [f.reasons[0]] and "disagree" in f.reasons[0]


def test_the_uncertainty_is_taken_over_the_class_axis_of_a_stack():
    p = np.stack([probabilities(0.99), probabilities(0.5)])  # (Z, C, H, W): one plane unsure
    f = measure_familiarity(p, None)
    assert np.isclose(f.uncertainty, (0.01 + 0.5) / 2, atol=1e-6) and f.disagreement is None
    assert f.unfamiliar


def test_missing_signals_never_flag():
    assert not Familiarity(None, None).unfamiliar


def test_training_summary_lists_what_the_checkpoint_records():
    training = {"data": "NIST phase-contrast tiles", "test_miou": 0.93, "best_val_miou": 0.9432}
    text = training_summary("phase", ["background", "colony"], training)
    assert text.splitlines() == [
        "phase: classes background, colony",
        "trained on NIST phase-contrast tiles",
        "test mIoU 0.93, validation mIoU 0.94",
    ]


def test_training_summary_without_a_record():
    text = training_summary("", ["a", "b"], {})
    assert text.splitlines() == ["unnamed model: classes a, b", "no record of its training data"]
    tuned = training_summary("x", ["a", "b"], {"train_labeled_pixels": 1200, "fine_tuned_from": "default"})
    assert "1,200 labelled pixels" in tuned and "fine-tuned from default" in tuned


def _blobs(shape=(128, 128)) -> np.ndarray:
    """A smooth image: a few Gaussian blobs, intensities 100–1100."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for cy, cx in ((30, 40), (90, 70), (60, 110)):
        image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 12.0**2))
    return 100 + 1000 * image


def test_relative_noise_grows_with_added_noise_and_ignores_smooth_structure():
    rng = np.random.default_rng(0)
    clean = _blobs()
    values = [fam.relative_noise(clean + rng.normal(0, sigma, clean.shape)) for sigma in (0, 10, 40, 160)]
    assert values[0] < 0.01 and values == sorted(values) and values[-1] > 5 * values[1]
    # σ relative to the 1–99 percentile spread: white noise σ on a flat ramp is recovered
    ramp = np.tile(np.linspace(0, 1, 256), (256, 1))
    noisy = ramp + rng.normal(0, 0.05, ramp.shape)
    lo, hi = np.percentile(noisy, [1, 99])
    assert abs(fam.relative_noise(noisy) - 0.05 / (hi - lo)) < 0.01
    # a stack: the planes' mean; leading axes are planes
    assert np.isclose(fam.relative_noise(np.stack([noisy, noisy])), fam.relative_noise(noisy))


def test_recorded_limits_replace_the_defaults_and_add_the_noise_check():
    record = {"familiarity_limits": {"uncertainty": 0.3, "disagreement": 0.04, "noise": 0.15, "junk": "x"}}
    limits = fam.limits_for(record)
    assert limits == {"uncertainty": 0.3, "disagreement": 0.04, "noise": 0.15}
    assert fam.limits_for({}) is None
    confident = measure_familiarity(probabilities(0.75), np.full((32, 32), 0.03), limits=limits)
    assert not confident.unfamiliar  # uncertainty 0.25: above the default limit, below the model's
    assert Familiarity(0.25, 0.03).unfamiliar
    noisy = Familiarity(0.1, 0.03, noise=0.2, limits=limits)
    assert noisy.reasons == [noisy.reasons[0]] and "noisier" in noisy.reasons[0] and "0.20 > 0.15" in noisy.reasons[0]
    assert not Familiarity(0.1, 0.03, noise=0.2).unfamiliar  # no recorded noise limit: not checked


def test_calibrate_takes_the_largest_in_domain_value_plus_a_margin():
    signals = [Familiarity(0.1, 0.02, 0.05), Familiarity(0.2, 0.01, None), Familiarity(None, 0.03, 0.1)]
    assert fam.calibrate(signals) == {"uncertainty": 0.22, "disagreement": 0.033, "noise": 0.11}


def test_the_bundled_model_records_limits_that_pass_its_sample_tiles_and_flag_low_light():
    from benchmarks.harness.degrade import LowLight
    from napari_cellprep.engine.checkpoint import load_default
    from napari_cellprep.engine.images.io import read_image, sample_paths
    from napari_cellprep.engine.prediction.inference import predict

    loaded = load_default()
    limits = fam.limits_for(loaded.info.training)
    assert limits is not None and set(limits) == {"uncertainty", "disagreement", "noise"}
    tile = read_image(sample_paths()[0])
    for image, expected in ((tile, False), (LowLight(5.0, read_noise=2.0).apply(tile, seed=0), True)):
        p = predict(loaded, image, outputs=("branches", "probabilities"))
        assert measure_familiarity(p.probabilities, p.disagreement, image, limits).unfamiliar == expected
