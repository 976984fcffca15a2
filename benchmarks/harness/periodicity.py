"""How much of an image's structure is a grid: the spectral power on the period-4 lattice.

Stride-2 transposed convolutions, stacked twice, can leave a period-2/4 dot grid in the
translation filters. Its signature is power at the frequencies (i·H/4, j·W/4), i, j in 0..3,
other than (0, 0), which natural images hardly have.
"""

from __future__ import annotations

import numpy as np

PERIOD = 4


def lattice_power_share(image: np.ndarray, period: int = PERIOD) -> float:
    """Share of the power spectrum of ``image`` (2D, mean removed) at the ``period²`` − 1 lattice
    frequencies (i·H/period, j·W/period) ≠ (0, 0). Height and width must be multiples of
    ``period``; 0.0 for a constant image."""
    height, width = image.shape
    if height % period or width % period:
        raise ValueError(
            f"image size {image.shape} must be a multiple of {period} in both axes; crop it first"
        )
    a = np.asarray(image, dtype=np.float64)
    power = np.abs(np.fft.fft2(a - a.mean())) ** 2
    total = power.sum()
    if total == 0:
        return 0.0
    lattice = power[:: height // period, :: width // period].sum()  # (0, 0) holds 0 after the mean
    return float(lattice / total)


def lattice_ratio(output: np.ndarray, reference: np.ndarray, period: int = PERIOD) -> float:
    """``lattice_power_share`` of ``output`` over that of ``reference`` (e.g. a filter over its
    input image): about 1 when the output has no more grid than the input, ≫ 10 for a dot grid."""
    base = lattice_power_share(reference, period)
    share = lattice_power_share(output, period)
    return share / base if base > 0 else float("inf") if share > 0 else 1.0
