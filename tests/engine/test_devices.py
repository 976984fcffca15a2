"""The precision a device predicts in: 'auto' picks a native 16-bit type only where it met issue
#41's bar (``MEETS_THE_BAR``), named precisions are checked, emulated ones come with a note."""

import json

import pytest
import torch

from napari_cellprep.engine import devices
from napari_cellprep.engine.devices import (
    autocast_dtype,
    default_precision,
    native_precisions,
    precision_note,
    resolve_precision,
)
from napari_cellprep.engine.errors import SettingsError
from tests.conftest import REPO

CPU = torch.device("cpu")


@pytest.fixture
def native_cpu_bfloat16(monkeypatch):
    """``set(native)``: pretend this CPU does (or does not) compute bfloat16 in hardware."""
    return lambda native: monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda: native)


def test_auto_is_float32_unless_a_native_16_bit_type_met_the_bar(monkeypatch, native_cpu_bfloat16):
    native_cpu_bfloat16(True)
    assert native_precisions(CPU) == ("bfloat16",)
    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset())
    assert default_precision(CPU) == "float32" == resolve_precision("auto", CPU) == resolve_precision(None, CPU)
    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset({("cpu", "bfloat16")}))
    assert resolve_precision("auto", CPU) == "bfloat16"
    native_cpu_bfloat16(False)  # met the bar, but emulated here: slower, so not the default
    assert native_precisions(CPU) == () and resolve_precision("auto", CPU) == "float32"
    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset({("cuda", "float16")}))
    assert resolve_precision("auto", CPU) == "float32"  # another device's verdict does not apply


def test_named_precisions_are_kept_and_checked():
    for name in ("float32", "bfloat16", "float16"):
        assert resolve_precision(name, CPU) == name
    assert autocast_dtype("float32") is None and autocast_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(SettingsError, match="'auto' or one of"):
        resolve_precision("fp8", CPU)
    with pytest.raises(SettingsError, match="precision must be one of"):
        autocast_dtype("auto")  # resolved first: never autocast to "auto"


def test_emulated_16_bit_types_come_with_a_note(native_cpu_bfloat16):
    native_cpu_bfloat16(False)
    note = precision_note("bfloat16", CPU)
    assert "emulated" in note and "slower than float32" in note
    assert "emulated" in precision_note("float16", CPU)
    assert precision_note("float32", CPU) == ""
    native_cpu_bfloat16(True)
    assert precision_note("bfloat16", CPU) == "" and "emulated" in precision_note("float16", CPU)


def test_the_bar_table_follows_the_measured_verdicts():
    """``MEETS_THE_BAR`` holds exactly the (device, precision) pairs that met the bar in the recorded
    run of benchmarks/performance/precision.py (measured pairs only; others stay out)."""
    record = json.loads((REPO / "docs" / "results" / "performance" / "precision.json").read_text())
    met = {tuple(name.split()) for name, verdict in record["verdicts"].items() if verdict["meets_bar"]}
    assert record["verdicts"] and devices.MEETS_THE_BAR == frozenset(met)
