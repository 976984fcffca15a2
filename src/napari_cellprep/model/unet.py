"""A 2D U-Net feature extractor with optional attention gates (Oktay et al. 2018)."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv → BatchNorm → ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels))


class AttentionGate(nn.Module):
    """Additive attention gate: scales skip features by a map computed with the gating signal."""

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.skip = nn.Conv2d(skip_channels, inter_channels, 1, bias=False)
        self.gate = nn.Conv2d(gate_channels, inter_channels, 1)
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1), nn.Sigmoid())

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.psi(torch.relu(self.skip(skip) + self.gate(gate)))


class UNet(nn.Module):
    """U-Net returning the last decoder features (``out_channels == width``).

    ``depth`` pooling steps; widths ``width · 2^level``. Inputs must be divisible by
    ``2**depth`` (the wrapping networks pad).
    """

    def __init__(self, in_channels: int, width: int = 16, depth: int = 4, attention: bool = False) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.out_channels = width
        self.encoders = nn.ModuleList([double_conv(in_channels, widths[0])])
        self.encoders.extend(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        self.decoders = nn.ModuleList(double_conv(2 * widths[i], widths[i]) for i in range(depth))
        self.gates = (
            nn.ModuleList(AttentionGate(widths[i], widths[i], max(widths[i] // 2, 1)) for i in range(depth))
            if attention
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(len(self.decoders))):
            up = self.ups[level](x)
            skip = skips[level]
            if self.gates is not None:
                skip = self.gates[level](skip, up)
            x = self.decoders[level](torch.cat([skip, up], dim=1))
        return x
