"""The network as other tools run it: tensors out, and an architecture file that needs torch only."""

import subprocess
import sys

import numpy as np
import torch

from napari_cellprep.engine.checkpoint import load_checkpoint
from napari_cellprep.engine.images.normalize import normalize_channels
from napari_cellprep.engine.prediction.inference import predict
from napari_cellprep.model.export import ExportNet, architecture_source

RUN_ALONE = """
import sys, importlib.util, torch
sys.modules["napari_cellprep"] = None  # importing our package would fail: the file stands alone
sys.modules["monai"] = None
spec = importlib.util.spec_from_file_location("arch", sys.argv[1])
arch = importlib.util.module_from_spec(spec)
sys.modules["arch"] = arch
spec.loader.exec_module(arch)
config, state, x = torch.load(sys.argv[2], weights_only=False)
net = arch.ExportNet(**config)
net.load_state_dict(state)
with torch.no_grad():
    torch.save([t for t in net.eval()(x)], sys.argv[3])
"""


def test_architecture_file_stands_alone_and_matches_our_prediction(tiny_checkpoint, cells, tmp_path):
    loaded = load_checkpoint(tiny_checkpoint)
    net = ExportNet(**loaded.info.config.to_dict())
    net.net.load_state_dict(loaded.model.state_dict())
    image = cells((64, 48))
    x = torch.from_numpy(normalize_channels(image[None], loaded.info.normalization)[None])
    (tmp_path / "arch.py").write_text(architecture_source())
    torch.save([loaded.info.config.to_dict(), net.state_dict(), x], tmp_path / "in.pt")
    code = [sys.executable, "-c", RUN_ALONE, *(str(tmp_path / n) for n in ("arch.py", "in.pt", "out.pt"))]
    subprocess.run(code, check=True)
    probabilities, filters, translated = torch.load(tmp_path / "out.pt")
    ours = predict(loaded, image, outputs=("probabilities", "filters", "translated"), tile=1024)
    np.testing.assert_allclose(probabilities[0].numpy(), ours.probabilities, atol=1e-5)
    np.testing.assert_allclose(filters[0].numpy(), ours.filters, atol=1e-5)
    np.testing.assert_allclose(translated[0].numpy(), ours.translated.reshape(-1, 64, 48), atol=1e-5)
