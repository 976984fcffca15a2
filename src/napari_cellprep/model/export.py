"""The network as other tools run it: tensors in, tensors out (bioimage.io, TorchScript).

``ExportNet`` takes a normalised batch (B, in_channels, H, W) whose H and W are multiples of the
model's size multiple and returns the ensemble's class probabilities, and for CellPrep the
translation filters and the translated images (C · in_channels channels, t_1 first).
``architecture_source`` writes this module and the network's modules as one self-contained
Python file (torch only), the architecture a bioimage.io package names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig
from .networks import build_model

SOURCES = ("config.py", "unet.py", "backbones.py", "networks.py", "export.py")
"""The modules ``architecture_source`` joins, each after those it imports."""


class ExportNet(nn.Module):
    """A model's forward pass as plain tensors; ``config`` holds ``ModelConfig`` fields."""

    def __init__(self, **config) -> None:
        super().__init__()
        self.net = build_model(ModelConfig(**config))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net._forward(x)  # no padding: sizes are multiples of the size multiple
        probabilities = torch.softmax(out.ensemble_logits, dim=1)
        if out.filters is None:
            return (probabilities,)
        return probabilities, out.filters, out.translated.flatten(1, 2)


def architecture_source() -> str:
    """This package's network code as one Python file without relative imports."""
    here = Path(__file__).parent
    parts = ["from __future__ import annotations\n"]
    for name in SOURCES:
        text = (here / name).read_text()
        lines = text.splitlines(keepends=True)
        drop = set()
        for node in ast.parse(text).body:
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or node.module == "__future__"):
                drop.update(range(node.lineno - 1, node.end_lineno))
        parts.append(f"\n# ---- napari_cellprep/model/{name} ----\n")
        parts.append("".join(line for i, line in enumerate(lines) if i not in drop))
    return "".join(parts)
