"""A small multilayer perceptron on pixel features (QuPath's default pixel classifier), in torch:
fitted full-batch on the painted pixels in a fraction of a second, applied to a feature image as
1×1 convolutions (CPU or GPU, any tiling)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F

from .state import ClassifierState, as_batch

KIND = "mlp"


@dataclass(frozen=True)
class MLPSettings:
    """How the perceptron is built and fitted (defaults: the best mean mIoU of six variants, 16–64
    hidden units and 50–300 steps, on 12 cases of the three sets in a screen made for issue #39;
    larger or longer-trained ones fit the strokes and lose elsewhere)."""

    hidden: tuple[int, ...] = (16,)
    steps: int = 100
    learning_rate: float = 0.01
    weight_decay: float = 1e-4
    balanced: bool = True
    """Weigh each class by the inverse of its share of the painted pixels."""
    seed: int = 0


class MLPClassifier:
    """Standardised features → (Linear, ReLU)* → Linear → softmax."""

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], mean: torch.Tensor,
                 std: torch.Tensor, feature_names: Sequence[str], settings: MLPSettings = MLPSettings()):
        self.weights, self.biases = [w.float() for w in weights], [b.float() for b in biases]
        self.mean, self.std = mean.float(), std.float()
        self.feature_names = list(feature_names)
        self.num_classes = int(self.weights[-1].shape[0])
        self.settings = settings

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, num_classes: int, feature_names: Sequence[str],
            settings: MLPSettings = MLPSettings(), reference: torch.Tensor | None = None) -> MLPClassifier:
        """Fit on ``x`` (n, F) and class indices ``y`` (n,), on their device. Features are
        standardised by the mean and deviation of ``reference`` (m, F), pixels of the whole
        images (default ``x``): stroke pixels alone lie inside regions, where edge features barely
        vary, and scaled by them the edges become outliers the network extrapolates wildly to."""
        generator = torch.Generator().manual_seed(settings.seed)
        reference = x if reference is None else reference.to(x.device)
        mean, std = reference.mean(0), reference.std(0).clamp_min(1e-6)
        sizes = [x.shape[1], *settings.hidden, num_classes]
        weights, biases = [], []
        for n_in, n_out in pairwise(sizes):
            bound = 1.0 / n_in**0.5  # torch.nn.Linear's initialisation
            weights.append(((torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound).to(x.device).requires_grad_())
            biases.append(((torch.rand(n_out, generator=generator) * 2 - 1) * bound).to(x.device).requires_grad_())
        counts = torch.bincount(y, minlength=num_classes).float()
        class_weight = (counts.sum() / (num_classes * counts.clamp_min(1))) if settings.balanced else None
        optimizer = torch.optim.Adam([*weights, *biases], lr=settings.learning_rate, weight_decay=settings.weight_decay)
        z = (x - mean) / std
        with torch.enable_grad():
            for _ in range(settings.steps):
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(_forward(z, weights, biases), y, weight=class_weight)
                loss.backward()
                optimizer.step()
        return cls([w.detach() for w in weights], [b.detach() for b in biases], mean, std, feature_names, settings)

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """(F, H, W) or (B, F, H, W) → (C, H, W) or (B, C, H, W) probabilities."""
        batch, single = as_batch(features)
        device = batch.device
        with torch.no_grad():
            z = (batch.float() - self.mean.to(device)[:, None, None]) / self.std.to(device)[:, None, None]
            for k, (w, b) in enumerate(zip(self.weights, self.biases)):
                z = F.conv2d(z, w.to(device)[:, :, None, None], b.to(device))
                if k < len(self.weights) - 1:
                    z = torch.relu(z)
            out = torch.softmax(z, 1)
        return out[0] if single else out

    def state(self) -> ClassifierState:
        arrays = {"mean": self.mean, "std": self.std}
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"layer{k}.weight"], arrays[f"layer{k}.bias"] = w, b
        meta = {"kind": KIND, "num_classes": self.num_classes, "feature_names": self.feature_names,
                "layers": len(self.weights), "settings": {**self.settings.__dict__, "hidden": list(self.settings.hidden)}}
        return ClassifierState({k: v.detach().cpu().numpy().copy() for k, v in arrays.items()}, meta)

    @classmethod
    def from_state(cls, state: ClassifierState) -> MLPClassifier:
        a, meta = state.arrays, state.meta
        tensors = [(torch.from_numpy(np.asarray(a[f"layer{k}.weight"])), torch.from_numpy(np.asarray(a[f"layer{k}.bias"])))
                   for k in range(int(meta["layers"]))]
        settings = MLPSettings(**{**meta["settings"], "hidden": tuple(meta["settings"]["hidden"])})
        return cls([w for w, _ in tensors], [b for _, b in tensors], torch.from_numpy(np.asarray(a["mean"])),
                   torch.from_numpy(np.asarray(a["std"])), meta["feature_names"], settings)


def _forward(z: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> torch.Tensor:
    for k, (w, b) in enumerate(zip(weights, biases)):
        z = F.linear(z, w, b)
        if k < len(weights) - 1:
            z = torch.relu(z)
    return z
