"""Intensity normalisation to 0..1: min-max (the paper) or robust percentiles."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..errors import CellprepWarning, ImageLayoutError

MAX_STAT_SAMPLES = 4_000_000
STAT_ROWS = 1024
"""Rows read at a time when statistics are streamed."""


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become 0..1. Stored in checkpoints so inference matches training.

    ``minmax`` maps the image's minimum to 0 and maximum to 1 (Kato & Hotta). ``percentile``
    maps the ``low``/``high`` percentiles to 0/1 and clips, robust to hot pixels.
    """

    method: Literal["minmax", "percentile"] = "minmax"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.method not in ("minmax", "percentile"):
            raise ValueError(f"normalisation must be 'minmax' or 'percentile', got {self.method!r}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}")

    def stats(self, image: np.ndarray) -> tuple[float, float]:
        """The intensities mapped to 0 and 1, from (a strided sample of) ``image``."""
        values = np.asarray(image)
        if values.size > MAX_STAT_SAMPLES:
            values = values.reshape(-1)[:: sample_step(values.size)]
        # min and max are NaN or infinite if any pixel is: no image-sized mask in the usual case
        if values.dtype.kind in "fc" and not np.isfinite([values.min(), values.max()]).all():
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise ImageLayoutError("the image has no finite pixel values (all NaN or inf)")
        if self.method == "minmax":
            return float(values.min()), float(values.max())
        lo, hi = np.percentile(values, [self.low, self.high])
        return float(lo), float(hi)

    def apply(self, image: np.ndarray, stats: tuple[float, float] | None = None) -> np.ndarray:
        """``image`` as float32 in 0..1 (a constant image maps to 0; NaN and ±inf pixels to 0, the
        lowest intensity, see ``report_nonfinite``)."""
        lo, hi = self.stats(image) if stats is None else stats
        scale = 1.0 / (hi - lo) if hi > lo else 0.0
        out = (np.asarray(image, dtype=np.float32) - np.float32(lo)) * np.float32(scale)
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)  # NaN and inf alike: no data
        return np.clip(out, 0.0, 1.0, out=out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(**data)


def count_nonfinite(values: Any) -> int:
    """How many of ``values`` are NaN or infinite (none in an integer image)."""
    values = np.asarray(values)
    return int(values.size - np.count_nonzero(np.isfinite(values))) if values.dtype.kind in "fc" else 0


def report_nonfinite(count: int, where: str) -> None:
    """Tell (``CellprepWarning``) that ``count`` pixels of ``where`` were NaN or infinite."""
    if count:
        warnings.warn(
            f"{where}: {count} pixel(s) are NaN or infinite; they were taken as the lowest intensity, so "
            f"their labels mean nothing (mask them out, or fill them, to decide yourself)",
            CellprepWarning,
            stacklevel=3,
        )


def sample_step(size: int) -> int:
    """The stride of the flat sample ``Normalization.stats`` takes of ``size`` pixels."""
    return size // MAX_STAT_SAMPLES + 1 if size > MAX_STAT_SAMPLES else 1


def streamed_channel_stats(
    read_rows: Callable[[int, int], np.ndarray],
    height: int,
    width: int,
    normalization: Normalization,
    rows_per_read: int | None = None,
) -> list[tuple[float, float]]:
    """``channel_stats`` of a (channels, height, width) plane read band by band.

    ``read_rows(start, stop)`` returns rows ``start:stop`` of every channel (``rows_per_read`` at
    a time, default ``STAT_ROWS``). The flat sample is
    the one ``Normalization.stats`` takes of the whole plane, gathered band by band (at most
    ``MAX_STAT_SAMPLES`` values per channel in memory), so the statistics are identical.
    """
    step, rows_per_read = sample_step(height * width), rows_per_read or STAT_ROWS
    samples: list[list[np.ndarray]] = []
    for start in range(0, height, rows_per_read):
        band = np.asarray(read_rows(start, min(start + rows_per_read, height)))
        first = (-start * width) % step  # the first sampled flat index at or after this band
        if not samples:
            samples = [[] for _ in band]
        for kept, channel in zip(samples, band):
            kept.append(channel.reshape(-1)[first::step].copy())  # a copy: a view would keep the band
    return [normalization.stats(np.concatenate(kept)) for kept in samples]


def channel_stats(image: np.ndarray, normalization: Normalization) -> list[tuple[float, float]]:
    """The normalisation statistics of each channel of a (channels, H, W) plane."""
    return [normalization.stats(channel) for channel in image]


def normalize_channels(
    image: np.ndarray, normalization: Normalization, stats: Sequence[tuple[float, float]] | None = None
) -> np.ndarray:
    """Normalise a (channels, H, W) plane channel by channel, as training and inference both do.

    ``stats`` (one pair per channel, from ``Normalization.stats`` of the whole plane) lets a tile
    of a plane be normalised exactly as the whole plane would be.
    """
    if stats is None:
        stats = channel_stats(image, normalization)
    return np.stack([normalization.apply(channel, s) for channel, s in zip(image, stats)]).astype(
        np.float32, copy=False
    )
