"""A 2D U-Net feature extractor with optional attention gates (Oktay et al. 2018)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 8
"""GroupNorm groups (fewer when the channel count is not a multiple)."""


def norm_layer(norm: str, channels: int) -> nn.Module:
    """``batch`` (and ``split-batch``, whose network 2 ``split_batch_norms`` converts): BatchNorm2d;
    ``group``: GroupNorm with up to 8 groups (statistics per image)."""
    if norm in ("batch", "split-batch"):
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(GROUPS, channels), channels)
    raise ValueError(f"unknown norm {norm!r}")


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics are computed separately for each of ``splits``
    interleaved images (batch row ``b · splits + k`` belongs to image k), as if the layer were
    called once per image: network 2 of the authors' code runs once per translated image, ours in
    one batched call. The running statistics average the splits', and evaluation uses them, like
    the authors' shared layer. ``splits == 1`` is plain BatchNorm."""

    def __init__(self, channels: int, splits: int = 1) -> None:
        super().__init__(channels)
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.splits == 1:
            return super().forward(x)
        n, channels, height, width = x.shape
        if n % self.splits:
            raise ValueError(f"batch of {n} is not a whole number of {self.splits} translated images each")
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        mean, var = self.running_mean.repeat(self.splits), self.running_var.repeat(self.splits)
        y = F.batch_norm(
            x.reshape(n // self.splits, self.splits * channels, height, width),
            mean,
            var,
            self.weight.repeat(self.splits),
            self.bias.repeat(self.splits),
            True,
            factor,
            self.eps,
        )
        with torch.no_grad():
            self.running_mean.copy_(mean.view(self.splits, channels).mean(0))
            self.running_var.copy_(var.view(self.splits, channels).mean(0))
        return y.view(n, channels, height, width)


def split_batch_norms(module: nn.Module, splits: int) -> None:
    """Replace every BatchNorm2d in ``module`` by a ``SplitBatchNorm2d`` with ``splits`` splits."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.BatchNorm2d:
                setattr(parent, name, SplitBatchNorm2d(child.num_features, splits))


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, norm: str = "batch", activation: str = "relu"
) -> nn.Sequential:
    """Conv → normalisation → ReLU (or softplus), 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        norm_layer(norm, out_channels),
        nn.ReLU(inplace=True) if activation == "relu" else nn.Softplus(),
    )


def double_conv(in_channels: int, out_channels: int, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(
        conv_bn_relu(in_channels, out_channels, norm=norm),
        conv_bn_relu(out_channels, out_channels, norm=norm),
    )


def upsampler(in_channels: int, out_channels: int, mode: str) -> nn.Module:
    """×2 upsampling: ``transpose`` (2×2 stride-2 transposed conv: each output sub-pixel position
    has its own weights, a period-2 pattern) or ``resize`` (bilinear ×2, then a 3×3 conv: the
    same weights everywhere)."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
    if mode == "resize":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
        )
    raise ValueError(f"unknown upsample mode {mode!r}")


class MaxBlurPool2d(nn.Module):
    """Anti-aliased ×2 downsampling (Zhang 2019, "Making convolutional networks shift-invariant
    again"): the max over 2×2 windows at stride 1, then a 3×3 binomial blur at stride 2. Plain
    2×2 max pooling subsamples without a low-pass, so the network's output depends on where the
    pooling grid falls and a period-2^depth grid appears in smooth outputs such as the filters."""

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(taps, taps) / 16).view(1, 1, 3, 3), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)
        x = F.pad(x.reshape(batch * channels, 1, height, width), (1, 1, 1, 1), mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2).view(batch, channels, height // 2, width // 2)


def downsampler(mode: str) -> nn.Module:
    """×2 downsampling: ``max`` (2×2 max pooling, the paper's) or ``blur`` (``MaxBlurPool2d``)."""
    if mode == "max":
        return nn.MaxPool2d(2)
    if mode == "blur":
        return MaxBlurPool2d()
    raise ValueError(f"unknown downsample mode {mode!r}")


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
    ``2**depth`` (the wrapping networks pad). ``upsample``, ``downsample`` and ``norm``: see
    ``upsampler``, ``downsampler`` and ``norm_layer``.
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 16,
        depth: int = 4,
        attention: bool = False,
        upsample: str = "transpose",
        norm: str = "batch",
        downsample: str = "max",
    ) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.out_channels = width
        self.encoders = nn.ModuleList([double_conv(in_channels, widths[0], norm)])
        self.encoders.extend(double_conv(widths[i], widths[i + 1], norm) for i in range(depth))
        self.pool = downsampler(downsample)
        self.ups = nn.ModuleList(upsampler(widths[i + 1], widths[i], upsample) for i in range(depth))
        self.decoders = nn.ModuleList(double_conv(2 * widths[i], widths[i], norm) for i in range(depth))
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
