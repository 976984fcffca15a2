"""benchmarks/loop/scribbles.py: the dock's settings read from the engine, and ``--set`` reaching a
run through the Train dock's code path (``train_run``), the seed included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import disks

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scribbles(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from benchmarks.loop import scribbles

    # every override lands in fresh copies, dropped after the test
    monkeypatch.setattr(scribbles, "SETTINGS", dict(scribbles.SETTINGS))
    monkeypatch.setattr(scribbles, "OVERRIDES", {})
    return scribbles


def _painted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, mask = disks(0, (64, 64))
    labels = np.zeros_like(mask)
    labels[30:34, 2:60] = mask[30:34, 2:60] + 1  # one painted band across both classes
    return image, labels, mask.astype(np.int64)


def test_the_dock_settings_carry_the_engine_defaults(scribbles):
    dock = scribbles._dock(False)
    assert dock["seed"] == 0 and dock["val_fraction"] == 0.2 and (dock["width"], dock["depth"]) == (16, 4)
    with pytest.raises(ValueError, match="unknown setting 'nope'"):
        scribbles.override("nope", "1")


def test_a_scratch_run_takes_the_settings_set(scribbles):
    for key, value in {
        "learning_rate": "0.003",
        "seed": "3",
        "width": "4",
        "depth": "2",
        "batch_size": "4",
        "patch_size": "32",
        "threads": "1",
        "device": "cpu",
    }.items():
        scribbles.override(key, value)
    assert scribbles.OVERRIDES["learning_rate"] == 0.003 and scribbles.OVERRIDES["seed"] == 3
    info, init = scribbles.model_info("scratch", None, ["background", "colony"])
    assert init is None and info.config.width == 4
    image, labels, mask = _painted()
    run = scribbles.train_run(
        image, labels, mask, info, None, seconds=float("inf"), preview=False, epochs=2, last_weights=True
    )
    last = run.pop("last_model")  # the weights after the last step, beside the dock's pick
    assert last.model is not run["model"].model and not last.model.training and last.info is info
    training = run["model"].info.training
    assert run["steps"] == 2 * run["steps_per_epoch"]
    assert training["learning_rate"] == 0.003 and training["batch_size"] == 4
    assert training["seed"] == 3 and training["val_labeled_pixels"] > 0  # the dock's 20 % held out


def test_set_reads_the_settings_as_numbers_and_refuses_unknown_ones(scribbles, capsys):
    scribbles.override("average_weights", "1")
    scribbles.override("fit_heads", "0")
    assert scribbles.SETTINGS["average_weights"] == 1.0 and isinstance(scribbles.SETTINGS["average_weights"], float)
    assert scribbles.SETTINGS["fit_heads"] == 0
    with pytest.raises(SystemExit):
        scribbles.main(["--set", "nope=1", "--tag", "x", "--report-only"])
    assert "--set nope=1: unknown setting 'nope'" in capsys.readouterr().err
