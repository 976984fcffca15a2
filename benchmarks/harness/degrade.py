"""Simulated low-light acquisition: Poisson shot noise plus Gaussian read noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LowLight:
    """A low-light level: the mean photon count per pixel and the read noise (photo-electrons, rms).

    The clean image is min-max scaled to 0..1, scaled so that its mean is ``photons``, replaced
    by a Poisson draw, and Gaussian read noise is added. The result is float32 in photo-electrons.
    """

    photons: float
    read_noise: float

    def apply(self, image: np.ndarray, seed: int) -> np.ndarray:
        """``image`` as acquired at this light level (same ``seed``, same noise)."""
        rng = np.random.default_rng(seed)
        x = np.asarray(image, dtype=np.float64)
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        mean = float(x.mean())
        expected = x * (self.photons / mean) if mean > 0 else x
        noisy = rng.poisson(expected).astype(np.float64) + rng.normal(0.0, self.read_noise, x.shape)
        return noisy.astype(np.float32)
