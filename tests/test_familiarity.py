"""Is an image like the model's training data? The engine's measure and the training summary."""

import numpy as np

from napari_cellprep.engine import familiarity as fam
from napari_cellprep.engine.familiarity import Familiarity, measure_familiarity, training_summary


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
