"""The CellPrep network (Kato & Hotta) and the plain baseline, with a typed forward result."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone
from .config import ModelConfig
from .unet import conv_bn_relu, split_batch_norms


@dataclass
class ModelOutput:
    """Everything one forward pass produces, for a batch of B images with C classes.

    ``branch_logits`` stacks the S outputs (network 1 first, then network 2 on t_1..t_C).
    ``filters`` (B, C, H, W) and ``translated`` (B, C, in_channels, H, W) are ``None`` for the
    plain baseline.
    """

    branch_logits: torch.Tensor
    ensemble_logits: torch.Tensor
    ensemble_weights: torch.Tensor
    ensemble_bias: torch.Tensor
    filters: torch.Tensor | None = None
    translated: torch.Tensor | None = None


def pad_mode(height: int, width: int, multiple: int) -> str:
    """How an image is padded at its bottom/right to the size multiple: ``reflect``, or
    ``replicate`` when the padding would be as large as the image (reflect cannot do that)."""
    return "reflect" if (-height) % multiple < height and (-width) % multiple < width else "replicate"


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=pad_mode(height, width, multiple))
    return x, (height, width)


def _crop(t: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor | None:
    return None if t is None else t[..., : size[0], : size[1]]


class SegmentationNet(nn.Module):
    """Base: pads inputs to the backbone's size multiple and crops every output back."""

    config: ModelConfig

    def forward(self, x: torch.Tensor) -> ModelOutput:
        x, size = _pad_to_multiple(x, self.config.size_multiple)
        out = self._forward(x)
        return ModelOutput(
            branch_logits=_crop(out.branch_logits, size),
            ensemble_logits=_crop(out.ensemble_logits, size),
            ensemble_weights=out.ensemble_weights,
            ensemble_bias=out.ensemble_bias,
            filters=_crop(out.filters, size),
            translated=_crop(out.translated, size),
        )

    def _forward(self, x: torch.Tensor) -> ModelOutput:
        return self.heads(self.trunk(x))

    def trunk(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """The maps the class-dependent layers read, for an input padded to the size multiple."""
        raise NotImplementedError

    def heads(self, trunk: dict[str, torch.Tensor]) -> ModelOutput:  # pragma: no cover - abstract
        """The class-dependent layers (heads, ensemble) on ``trunk``'s maps."""
        raise NotImplementedError


class PlainNet(SegmentationNet):
    """The baseline: one backbone and a 1×1 head (S = 1)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = _backbone(config)
        self.head = nn.Conv2d(self.backbone.out_channels, config.num_classes, 1)

    def trunk(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the class-dependent layers read (``heads``): the backbone's features."""
        return {"features": self.backbone(x)}

    def heads(self, trunk: dict[str, torch.Tensor]) -> ModelOutput:
        """The class-dependent layers on ``trunk``'s features."""
        features = trunk["features"]
        logits = self.head(features)
        one = torch.ones(1, device=features.device)
        zero = torch.zeros((), device=features.device)
        return ModelOutput(logits.unsqueeze(1), logits, one, zero)


class CellPrepNet(SegmentationNet):
    """Network 1 learns translation filters; network 2 segments each translated image; a
    learned point-wise 3D convolution merges all S = C + 1 outputs (METHOD.md, steps 1–4)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.num_classes
        self.net1 = _backbone(config)
        self.penultimate = conv_bn_relu(
            self.net1.out_channels,
            config.penultimate_width,
            norm=config.norm,
            activation=config.filter_activation,
        )
        self.head1 = nn.Conv2d(config.penultimate_width, c, 1)
        self.net2 = _backbone(config)
        if config.norm == "split-batch":  # statistics per translated image, as the authors' loop
            split_batch_norms(self.net2, c)
        self.head2 = nn.Conv2d(self.net2.out_channels, c, 1)
        self.ensemble = nn.Conv3d(config.num_outputs, 1, 1) if config.ensemble == "learned" else None
        if self.ensemble is not None and config.ensemble_init == "equal":
            nn.init.constant_(self.ensemble.weight, 1.0 / config.num_outputs)
            nn.init.zeros_(self.ensemble.bias)
        # softmax ensemble: w = softmax(scores), equal at the start, never negative
        self.ensemble_scores = (
            nn.Parameter(torch.zeros(config.num_outputs)) if config.ensemble == "softmax" else None
        )

    def trunk(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything before the heads: network 1's penultimate maps ``hp`` (the first C are the
        filters), the translated images and network 2's features on each (B·C, width, H, W)."""
        c = self.config.num_classes
        hp = self.penultimate(self.net1(x))
        translated = torch.sigmoid(x.unsqueeze(1) + hp[:, :c].unsqueeze(2))  # B, C, in, H, W
        features2 = self.net2(translated.flatten(0, 1))  # one call for all C images
        return {"hp": hp, "translated": translated, "features2": features2}

    def heads(self, trunk: dict[str, torch.Tensor]) -> ModelOutput:
        """The heads on ``trunk``'s maps, and the ensemble of the S branches."""
        hp, translated = trunk["hp"], trunk["translated"]
        batch, c = hp.shape[0], self.config.num_classes
        logits1 = self.head1(hp)
        logits2 = self.head2(trunk["features2"]).unflatten(0, (batch, c))  # B, C (image), C (class), H, W
        branches = torch.cat([logits1.unsqueeze(1), logits2], dim=1)  # B, S, C, H, W
        weights, bias = self.ensemble_parameters(hp.device)
        if self.ensemble is not None:
            ensemble = self.ensemble(branches).squeeze(1)
        else:
            ensemble = torch.einsum("s,bschw->bchw", weights.to(branches.dtype), branches)
        return ModelOutput(branches, ensemble, weights, bias, hp[:, :c], translated)

    def ensemble_parameters(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights w_1..w_S and bias of the ensemble (fixed modes give their constants)."""
        s = self.config.num_outputs
        if self.ensemble is not None:
            return self.ensemble.weight.flatten(), self.ensemble.bias.squeeze()
        if self.ensemble_scores is not None:
            return torch.softmax(self.ensemble_scores, 0), torch.zeros((), device=self.ensemble_scores.device)
        if self.config.ensemble == "fixed":
            weights = torch.ones(s, device=device)
        else:  # "none": network 2's outputs alone, averaged
            weights = torch.full((s,), 1.0 / (s - 1), device=device)
            weights[0] = 0.0
        return weights, torch.zeros((), device=device)


def _backbone(config: ModelConfig) -> nn.Module:
    return build_backbone(
        config.backbone,
        config.in_channels,
        config.width,
        config.depth,
        config.upsample,
        config.norm,
        config.downsample,
    )


def build_model(config: ModelConfig) -> SegmentationNet:
    """Instantiate the network a config describes."""
    return CellPrepNet(config) if config.architecture == "cellprep" else PlainNet(config)


def output_names(config: ModelConfig) -> list[str]:
    """Human-readable names of the S branch outputs, in order. Translated image t_k is named by
    its number only: nothing in the method ties filter k to class k."""
    if config.architecture != "cellprep":
        return [config.backbone]
    return ["network 1"] + [f"network 2 on t{k + 1}" for k in range(config.num_classes)]
