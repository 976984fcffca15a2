"""Model configuration: everything needed to rebuild a network, JSON-serialisable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Architecture = Literal["cellprep", "unet"]
Backbone = Literal["unet", "unet++", "attention-unet"]
Ensemble = Literal["learned", "softmax", "fixed", "none"]
EnsembleInit = Literal["random", "equal"]
Upsample = Literal["transpose", "resize"]
Downsample = Literal["max", "blur"]
FilterActivation = Literal["relu", "softplus"]
Norm = Literal["batch", "split-batch", "group"]

ARCHITECTURES = ("cellprep", "unet")
BACKBONES = ("unet", "unet++", "attention-unet")
ENSEMBLES = ("learned", "softmax", "fixed", "none")
ENSEMBLE_INITS = ("random", "equal")
UPSAMPLES = ("transpose", "resize")
DOWNSAMPLES = ("max", "blur")
FILTER_ACTIVATIONS = ("relu", "softplus")
NORMS = ("batch", "split-batch", "group")

MAX_DEPTH = 8
MAX_WIDTH = 1024
MAX_CHANNELS = 1024
"""Sane bounds (classes, input channels and penultimate maps: ``MAX_CHANNELS``): a description
beyond them, as in a damaged or crafted checkpoint, would exhaust the machine when built."""

LEGACY = {
    "upsample": "transpose",
    "downsample": "max",
    "filter_activation": "relu",
    "norm": "batch",
}
"""Values of settings added after format 1, for checkpoints written before they existed."""

REMOVED = {
    "denoise_head": (
        False,
        "a denoise head trained by a Noise2Void loss, which measured worse (lower in 14 of 18 paired runs, "
        "-7.05 [-12.48, -1.62] mIoU points: docs/results.md) and left the product",
    ),
}
"""Settings that left the product: ``{name: (the value a checkpoint may name and still load, why it
left)}``. A checkpoint written before that names another value cannot be rebuilt."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a segmentation model.

    ``architecture="cellprep"`` is Kato & Hotta's two-network method; ``"unet"`` is the plain
    baseline (the backbone with a 1×1 head). ``penultimate`` is the width of network 1's
    penultimate maps; the first ``num_classes`` of them are the translation filters. The paper
    uses exactly ``num_classes`` (``None`` here); the default 16 is the authors' code's, chosen
    on evidence: with C channels, network 1's own output stayed at chance
    (docs/results/archive/results-v1.md).
    The defaults are the product's (``named_config("paper")`` is the published method): a softmax
    ensemble (the paper's random Conv3d init killed branches), resize upsampling and softplus
    filters (the transposed convolutions left a dot grid in the filters; docs/results/results.md).
    ``ensemble`` is the paper's ablation: ``learned`` 1×1×1 3D conv weights (the paper's),
    ``softmax`` (non-negative weights that sum to 1, a softmax over S learned scores starting
    equal: no branch can be inverted or switched off by the init), ``fixed`` (w = 1, the sum) or
    ``none`` (network 2's outputs alone, averaged). ``ensemble_init="equal"`` starts the
    ``learned`` weights at 1/S instead of PyTorch's random init.

    ``upsample``: ``transpose`` (stride-2 transposed convolution, the paper's U-Net; leaves a
    period-2/4 grid in the filters) or ``resize`` (bilinear ×2 then a 3×3 convolution).
    ``downsample``: ``max`` (2×2 max pooling, the paper's) or ``blur`` (max over 2×2 at stride 1,
    then a binomial blur at stride 2: Zhang 2019's anti-aliased MaxBlurPool). Strided pooling makes
    the network shift-variant with period 2^depth, which left a faint grid in the filters even with
    ``resize`` upsampling; blurring before subsampling removes most of it.
    ``filter_activation``: ``relu`` (the paper's; a filter can be zero almost everywhere) or
    ``softplus`` (smooth and positive everywhere: every filter stays a live image).
    ``norm``: ``batch`` (BatchNorm, the paper's), ``split-batch`` (BatchNorm, but network 2's
    training statistics are computed per translated image, as the authors' code does by running
    network 2 once per translated image; ours stays one batched call) or ``group`` (GroupNorm:
    statistics per image, so each translated image is normalised on its own and tiny fine-tuning
    batches are safe).
    """

    num_classes: int = 2
    in_channels: int = 1
    architecture: Architecture = "cellprep"
    backbone: Backbone = "unet"
    width: int = 16
    depth: int = 4
    penultimate: int | None = 16
    ensemble: Ensemble = "softmax"
    ensemble_init: EnsembleInit = "random"
    upsample: Upsample = "resize"
    downsample: Downsample = "blur"
    filter_activation: FilterActivation = "softplus"
    norm: Norm = "batch"

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {self.in_channels}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {self.ensemble!r}")
        if self.ensemble_init not in ENSEMBLE_INITS:
            raise ValueError(f"ensemble_init must be one of {ENSEMBLE_INITS}, got {self.ensemble_init!r}")
        for name, allowed in (
            ("upsample", UPSAMPLES),
            ("downsample", DOWNSAMPLES),
            ("filter_activation", FILTER_ACTIVATIONS),
            ("norm", NORMS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"width and depth must be positive, got {self.width}, {self.depth}")
        if self.width > MAX_WIDTH or self.depth > MAX_DEPTH:
            raise ValueError(
                f"width and depth must be at most {MAX_WIDTH} and {MAX_DEPTH}, got {self.width}, {self.depth}"
            )
        if max(self.num_classes, self.in_channels, self.penultimate or 0) > MAX_CHANNELS:
            raise ValueError(f"classes, input channels and penultimate width must be at most {MAX_CHANNELS}")
        if self.backbone == "unet++" and self.depth != 4:
            raise ValueError("the unet++ backbone (MONAI BasicUNetPlusPlus) has depth 4; set depth=4")
        if self.penultimate is not None and self.penultimate < self.num_classes:
            raise ValueError(
                f"penultimate width ({self.penultimate}) must be at least num_classes ({self.num_classes}); "
                f"set penultimate to {self.num_classes} or more, or None (= num_classes, as the paper)"
            )

    @property
    def penultimate_width(self) -> int:
        """Channels of network 1's penultimate maps."""
        return self.num_classes if self.penultimate is None else self.penultimate

    @property
    def num_outputs(self) -> int:
        """S: the number of segmentation outputs before the ensemble."""
        return self.num_classes + 1 if self.architecture == "cellprep" else 1

    @property
    def size_multiple(self) -> int:
        """Input sizes that the backbone handles without internal padding."""
        return 2**self.depth

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        for name, (loadable, why) in REMOVED.items():
            if name in data and data.pop(name) != loadable:
                raise ValueError(
                    f"the model was built with {name}: {why}; this version cannot rebuild it: retrain it "
                    f"without {name}, or load it with napari-cellprep 0.1.0, which still has it"
                )
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown model settings {sorted(unknown)}; is the checkpoint from a newer version?"
            )
        return cls(**{**LEGACY, **data})


PAPER: dict[str, Any] = {
    "penultimate": None,
    "ensemble": "learned",
    "ensemble_init": "random",
    "upsample": "transpose",
    "downsample": "max",
    "filter_activation": "relu",
    "norm": "batch",
}
"""The settings of Kato & Hotta's method exactly (C-wide penultimate maps, randomly initialised
Conv3d ensemble, transposed-convolution U-Net with BatchNorm, ReLU filters)."""

NAMED_CONFIGS: dict[str, dict[str, Any]] = {"default": {}, "paper": PAPER}
"""Named architectures: ``default`` is the product's (``ModelConfig``'s defaults, chosen on
evidence in docs/results/results.md), ``paper`` the published method."""


def named_config(name: str, **settings: Any) -> ModelConfig:
    """The architecture ``name`` (see ``NAMED_CONFIGS``), with ``settings`` (class count, width …)
    on top."""
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; choose one of {sorted(NAMED_CONFIGS)}")
    return ModelConfig(**{**NAMED_CONFIGS[name], **settings})
