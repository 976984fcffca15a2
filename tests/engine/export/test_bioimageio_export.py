"""cellprep export --bioimageio: a package bioimageio.core validates and test-runs, offline."""

import socket
import zipfile

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")

from napari_cellprep import cli  # noqa: E402
from napari_cellprep.engine.checkpoint import load_checkpoint  # noqa: E402
from napari_cellprep.engine.prediction.inference import predict  # noqa: E402


@pytest.fixture
def offline(monkeypatch):
    """No network: CI has none, so neither may the export or its validation."""

    def refuse(*args, **kwargs):
        raise OSError("network access during the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_export_validates_and_reproduces_our_prediction(tiny_checkpoint, tmp_path, offline, capsys):
    out = tmp_path / "tiny.zip"
    assert cli.main(["export", str(tiny_checkpoint), "--bioimageio", str(out)]) == 0
    assert "passed validation and its test run" in capsys.readouterr().out
    with zipfile.ZipFile(out) as package:
        names = set(package.namelist())
        rdf = package.read("rdf.yaml").decode()
        test_input = np.load(package.open("test_input.npy"))
        probabilities = np.load(package.open("test_probabilities.npy"))
    assert {
        "weights.pt",
        "weights_torchscript.pt",
        "cellprep_architecture.py",
        "cover.png",
        "README.md",
    } <= names
    assert "format_version: 0.5" in rdf and "BSD-3-Clause" in rdf and "10.48550/arXiv.2108.13118" in rdf
    assert "background" in rdf and "colony" in rdf and "minmax" in rdf and "scale_range" in rdf
    assert "filters" in rdf and "translated" in rdf
    # the package's test output is our own prediction of the test input
    ours = predict(load_checkpoint(tiny_checkpoint), test_input[0, 0], outputs=("probabilities",), tile=1024)
    np.testing.assert_allclose(probabilities[0], ours.probabilities, atol=1e-4)
    assert cli.main(["export", str(tiny_checkpoint), "--bioimageio", str(out)]) == 1  # never overwritten
    assert "already exists" in capsys.readouterr().err
