"""Backbone feature extractors: the paper's U-Net, Attention U-Net and MONAI's U-Net++."""

from __future__ import annotations

import math

import torch
from torch import nn

from .unet import GROUPS, UNet, downsampler


class UNetPlusPlus(nn.Module):
    """MONAI's ``BasicUNetPlusPlus`` (depth 4) with its heads removed: returns decoder features."""

    def __init__(
        self,
        in_channels: int,
        width: int = 16,
        upsample: str = "transpose",
        norm: str = "batch",
        downsample: str = "max",
    ) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNetPlusPlus

        features = (width, 2 * width, 4 * width, 8 * width, 16 * width, width)
        group = ("group", {"num_groups": math.gcd(GROUPS, width)})
        net = BasicUNetPlusPlus(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=1,
            features=features,
            norm=group if norm == "group" else "batch",  # split-batch: CellPrepNet splits network 2's
            upsample="deconv" if upsample == "transpose" else "nontrainable",
        )
        if downsample != "max":  # MONAI pools with nn.MaxPool2d(2) in each Down block
            for module in net.modules():
                for child_name, child in module.named_children():
                    if isinstance(child, nn.MaxPool2d):
                        setattr(module, child_name, downsampler(downsample))
        for name in ("final_conv_0_1", "final_conv_0_2", "final_conv_0_3", "final_conv_0_4"):
            setattr(net, name, nn.Identity())
        self.net = net
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]


def build_backbone(
    name: str,
    in_channels: int,
    width: int,
    depth: int,
    upsample: str = "transpose",
    norm: str = "batch",
    downsample: str = "max",
) -> nn.Module:
    """Return a module mapping (B, in_channels, H, W) to (B, width, H, W) features."""
    if name in ("unet", "attention-unet"):
        attention = name == "attention-unet"
        return UNet(in_channels, width, depth, attention, upsample=upsample, norm=norm, downsample=downsample)
    if name == "unet++":
        return UNetPlusPlus(in_channels, width, upsample, norm, downsample)
    raise ValueError(f"unknown backbone {name!r}")
