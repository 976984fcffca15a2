"""Classic multiscale pixel features (ilastik's filter families) as fixed torch convolutions.

Every feature is a separable Gaussian-derivative filter of the normalised image (or a pointwise
function of a few of them): Gaussian smoothing, gradient magnitude, Laplacian of Gaussian,
difference of Gaussians, and the two eigenvalues of the Hessian and of the structure tensor, at
ilastik's scales 0.3..10 (0.3: smoothing only). The same code runs on the CPU and on CUDA, on a
batch of images, and tile by tile: a tile read with ``halo(scales)`` pixels of context on each
side gives the whole image's features inside that context (outside the image the image is
mirrored). Input is expected in 0..1 (the product's normalisation, e.g. percentile, first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SCALES: tuple[float, ...] = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
"""ilastik's scales (pixels)."""
FAMILIES: tuple[str, ...] = (
    "gaussian",
    "gradient_magnitude",
    "laplacian",
    "dog",
    "hessian_eig1",
    "hessian_eig2",
    "structure_eig1",
    "structure_eig2",
)
"""Per scale, in this order; at scales below ``MIN_DERIVATIVE_SCALE`` only ``gaussian``."""
MIN_DERIVATIVE_SCALE = 0.5
DOG_RATIO = 0.66
"""Difference of Gaussians: G(σ) − G(0.66 σ), as ilastik."""
STRUCTURE_OUTER = 0.5
"""The structure tensor's outer (averaging) scale relative to its inner (gradient) scale."""
TRUNCATE = 4.0
"""Kernels reach ``ceil(TRUNCATE σ)`` pixels (at least 1)."""


def radius(sigma: float) -> int:
    """How far a kernel of scale ``sigma`` reaches."""
    return max(1, math.ceil(TRUNCATE * sigma))


def _families(sigma: float) -> tuple[str, ...]:
    return FAMILIES if sigma >= MIN_DERIVATIVE_SCALE else ("gaussian",)


def feature_names(in_channels: int = 1, scales: Sequence[float] = SCALES) -> list[str]:
    """The stable names of the feature channels, ``"<family>@<sigma>"`` (``"c<k>:"`` in front
    for multi-channel input), channel-major then scale then family."""
    prefix = (lambda k: f"c{k}:") if in_channels > 1 else (lambda k: "")
    return [f"{prefix(k)}{family}@{sigma:g}" for k in range(in_channels) for sigma in scales for family in _families(sigma)]


def halo(scales: Sequence[float] = SCALES) -> int:
    """The context in pixels a tile needs on each side for exact features inside it (the
    structure tensor's gradient and averaging kernels add up)."""
    return max(radius(s) + (radius(STRUCTURE_OUTER * s) if s >= MIN_DERIVATIVE_SCALE else 0) for s in scales)


def _kernels(sigma: float, device: torch.device) -> torch.Tensor:
    """(3, 2r+1) float32: Gaussian, first and second derivative (as correlation kernels: the first
    gives 1 on the ramp x, the second 1 on x²/2)."""
    r = radius(sigma)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    d1 = x * g
    d1 /= (x * d1).sum()
    d2 = (x**2 / sigma**2 - 1.0) * g
    d2 -= d2.mean()
    d2 *= 2.0 / (x**2 * d2).sum()
    return torch.tensor(np.stack([g, d1, d2]), dtype=torch.float32, device=device)


def _pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mirror-pad the last two axes by ``r`` (repeatedly where the image is smaller than ``r``)."""
    while r > 0:
        step = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
        if step < 1:
            return F.pad(x[:, None], (r, r, r, r), mode="replicate")[:, 0]
        x = F.pad(x[:, None], (step, step, step, step), mode="reflect")[:, 0]
        r -= step
    return x


def _banded(kernels: torch.Tensor, n: int) -> torch.Tensor:
    """(n + 2r, K·n): correlating a padded axis of length n + 2r with each of the K kernels
    (K, 2r+1) as one matrix product (on two CPU cores a product is several times faster than
    torch's depthwise convolutions of the same filters on 512², zeros included)."""
    count, size = kernels.shape
    zeros = kernels.new_zeros(count, n - 1)
    # column i holds the kernel in rows i .. i + 2r: windows of [0…0, kernel, 0…0], reversed
    band = torch.cat([zeros, kernels, zeros], 1).unfold(1, n, 1).flip(-1)  # (K, n + 2r, n)
    return band.permute(1, 0, 2).reshape(n + size - 1, count * n)


def _separable(x: torch.Tensor, kernels: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """``x`` (N, H, W) filtered by ``kernels[i]`` along y and ``kernels[j]`` along x for each
    (i, j) of ``pairs``, mirror-padded: one (N, H, W) tensor per pair. The x kernels a y kernel
    is paired with must be a range ``0..m-1`` (one product per y kernel)."""
    n, h, w = x.shape
    r = kernels.shape[-1] // 2
    used = max(j for _, j in pairs) + 1
    along_x = (_pad(x, r) @ _banded(kernels[:used], w)).view(n, h + 2 * r, used, w)
    filtered: dict[tuple[int, int], torch.Tensor] = {}
    for i in sorted({i for i, _ in pairs}):
        m = max(j for a, j in pairs if a == i) + 1
        source = along_x[:, :, :m].reshape(n, h + 2 * r, m * w)
        along_y = (_banded(kernels[i : i + 1], h).T @ source).view(n, h, m, w)
        filtered.update({(i, j): along_y[:, :, j] for j in range(m)})
    return [filtered[pair] for pair in pairs]


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of ``x`` (N, H, W)."""
    return _separable(x, _kernels(sigma, x.device)[:1], [(0, 0)])[0]


def _eigenvalues(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (larger, smaller) of the symmetric 2×2 matrices [[a, c], [c, b]]."""
    mean, root = 0.5 * (a + b), torch.hypot(0.5 * (a - b), c)
    return mean + root, mean - root


def _scale_features(x: torch.Tensor, sigma: float) -> list[torch.Tensor]:
    """The features of ``x`` (N, H, W) at one scale, each (N, H, W), in ``_families`` order."""
    k = _kernels(sigma, x.device)
    if sigma < MIN_DERIVATIVE_SCALE:
        return _separable(x, k, [(0, 0)])
    # (y kernel, x kernel): G, Gx, Gy, Gxx, Gyy, Gxy
    g, gx, gy, gxx, gyy, gxy = _separable(x, k, [(0, 0), (0, 1), (1, 0), (0, 2), (2, 0), (1, 1)])
    dog = g - _smooth(x, DOG_RATIO * sigma)
    hessian = _eigenvalues(gxx, gyy, gxy)
    n, h, w = x.shape
    products = torch.stack([gx * gx, gy * gy, gx * gy], 1).view(3 * n, h, w)
    structure = _eigenvalues(*_smooth(products, STRUCTURE_OUTER * sigma).view(n, 3, h, w).unbind(1))
    return [g, torch.hypot(gx, gy), gxx + gyy, dog, *hessian, *structure]


def pixel_features(image: np.ndarray | torch.Tensor, scales: Sequence[float] = SCALES, *,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """The features of a normalised image: (H, W) or (C, H, W) gives (F, H, W); a batch
    (B, C, H, W) gives (B, F, H, W), F = ``len(feature_names(C, scales))``, float32, on
    ``device`` (default: the tensor's own, the CPU for numpy input)."""
    x = torch.as_tensor(image)
    if device is not None:
        x = x.to(device)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"expected an (H, W), (C, H, W) or (B, C, H, W) image, got shape {tuple(x.shape)}")
    batched = x.ndim == 4
    x = x.reshape((1,) * (4 - x.ndim) + tuple(x.shape)).float()
    b, c, h, w = x.shape
    with torch.no_grad():
        flat = x.reshape(b * c, h, w)
        out = flat.new_empty(b * c, len(feature_names(1, scales)), h, w)
        index = 0
        for sigma in scales:
            for feature in _scale_features(flat, sigma):
                out[:, index] = feature
                index += 1
        out = out.view(b, -1, h, w)  # channel-major, as feature_names
    return out if batched else out[0]
