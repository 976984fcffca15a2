"""Whether an image looks like what the model was trained on, and what that training was.

Three signals, each compared with a limit; an image is *unfamiliar* when any is above its limit:

- ``uncertainty``: 1 − the mean over pixels of the ensemble's top class probability (the model
  hesitates everywhere).
- ``disagreement``: the mean branch disagreement (``Prediction.disagreement``): what a different
  modality raises (the ensemble may be confident while its branches disagree).
- ``noise``: the input's noise level relative to its intensity spread (``relative_noise``):
  what low light raises, even where the model stays confident (it then confidently errs).

The limits belong to a model: a checkpoint's training record may hold ``familiarity_limits``,
calibrated on images of its own domain that it did not train on (``calibrate``: the largest
value seen, plus 10%). ``scripts/train_default.py`` records them for the bundled model from its
20 held-out NIST tiles. A model without a record gets ``UNCERTAINTY_LIMIT`` and
``DISAGREEMENT_LIMIT`` and no noise check (its training data's noise is unknown).

The bundled model of commit c55b21d (``predict(load_default(), image,
outputs=("branches", "probabilities"))``, then ``measure_familiarity``; low light is
``degrade.LowLight(photons, read_noise=2).apply(tile, seed=0)``; EM: top-left 512² of the first
two images of each set in ``../shared/data``):

==========================================  ============  ===========  ===========
image                                       disagreement  uncertainty  noise
==========================================  ============  ===========  ===========
its 20 held-out NIST tiles                  0.010–0.041   0.031–0.289  0.011–0.137 (all 100)
the 3 sample tiles at 5 photons             0.029–0.050   0.030–0.038  0.158–0.216 (5 tiles)
one sample tile at 20 photons               0.102         0.079        0.087–0.209 (5 tiles)
ISBI 2012 EM membranes, 512² (2 images)     0.050–0.051   0.196–0.199  0.016
VNC EM, 512² (2 images)                     0.135–0.164   0.321–0.350  0.031
==========================================  ============  ===========  ===========

Its recorded limits (disagreement 0.0455, uncertainty 0.3175, noise 0.148) flag the EM images
through disagreement, every 5-photon tile through noise, and no held-out NIST tile. At 20 photons
the noise of 2 of 5 tiles lies inside the NIST range: moderate noise on a tile the model handles
is not flagged. The limits are a hint for the user, not a guarantee.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import convolve

UNCERTAINTY_LIMIT = 0.175
"""``1 − mean top-class probability`` above which an image is unfamiliar, for a model whose
checkpoint records no limits."""

DISAGREEMENT_LIMIT = 0.10
"""Mean branch disagreement above which an image is unfamiliar, for a model whose checkpoint
records no limits."""

MARGIN = 1.1
"""``calibrate``'s limits: the largest in-domain value times this."""

NEXT_STEP = "paint a few strokes of each class on it, then Train"
"""What to do about an unfamiliar image."""

_LAPLACE_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
_NOISE_CROP = 1024


def relative_noise(image: np.ndarray) -> float:
    """Noise σ of ``image`` (last two axes spatial; leading axes: planes or channels, averaged)
    over its 1–99 percentile intensity range: Immerkær's estimator (1996, "Fast noise variance
    estimation"), σ = √(π/2)·mean|I ∗ M|/6 with M the difference of two Laplacians, which
    cancels smooth structure. On at most the central 1024² of each plane."""
    a = np.asarray(image)
    planes = a.reshape(-1, *a.shape[-2:])
    values = []
    for plane in planes[:: max(1, len(planes) // 8)]:  # up to ~8 planes of a stack
        h, w = plane.shape
        top, left = max(0, (h - _NOISE_CROP) // 2), max(0, (w - _NOISE_CROP) // 2)
        x = plane[top : top + _NOISE_CROP, left : left + _NOISE_CROP].astype(np.float64)
        if min(x.shape) < 3:
            continue
        lo, hi = np.percentile(x, [1, 99])
        if hi <= lo:
            values.append(0.0)
            continue
        response = convolve((x - lo) / (hi - lo), _LAPLACE_DIFFERENCE, mode="reflect")[1:-1, 1:-1]
        values.append(float(np.sqrt(np.pi / 2) * np.abs(response).mean() / 6))
    return float(np.mean(values)) if values else 0.0


@dataclass(frozen=True)
class Familiarity:
    """The signals of one prediction (``None`` where not computed) and the model's ``limits``
    (``None`` or missing keys: the module's defaults; no noise limit by default)."""

    uncertainty: float | None
    disagreement: float | None
    noise: float | None = None
    limits: dict[str, float] | None = None

    def _limit(self, name: str) -> float | None:
        defaults = {"uncertainty": UNCERTAINTY_LIMIT, "disagreement": DISAGREEMENT_LIMIT, "noise": None}
        return (self.limits or {}).get(name, defaults[name])

    @property
    def reasons(self) -> list[str]:
        """Why the image looks unfamiliar, in words; empty when it does not."""
        words = {
            "uncertainty": "the model is unsure (uncertainty {value:.2f} > {limit:.3g})",
            "disagreement": "its branches disagree (mean {value:.2f} > {limit:.3g})",
            "noise": "it is much noisier than the training images (relative noise {value:.2f} > {limit:.3g})",
        }
        reasons = []
        for name, text in words.items():
            value, limit = getattr(self, name), self._limit(name)
            if value is not None and limit is not None and value > limit:
                reasons.append(text.format(value=value, limit=limit))
        return reasons

    @property
    def unfamiliar(self) -> bool:
        return bool(self.reasons)

    def message(self, model: str) -> str:
        """One sentence for the user: empty for a familiar image."""
        if not self.unfamiliar:
            return ""
        return (
            f"This image looks unlike what {model!r} was trained on: {' and '.join(self.reasons)}. "
            f"Do not trust this result; {NEXT_STEP}."
        )


def limits_for(training: dict[str, Any]) -> dict[str, float] | None:
    """The limits a checkpoint's training record holds (``familiarity_limits``), else ``None``."""
    recorded = training.get("familiarity_limits")
    if not isinstance(recorded, dict):
        return None
    known = ("uncertainty", "disagreement", "noise")
    return {k: float(v) for k, v in recorded.items() if k in known and isinstance(v, (int, float))} or None


def calibrate(in_domain: Iterable[Familiarity], margin: float = MARGIN) -> dict[str, float]:
    """Limits from a model's signals on images of its own domain that it did not train on."""
    measured = list(in_domain)
    limits = {}
    for name in ("uncertainty", "disagreement", "noise"):
        values = [getattr(f, name) for f in measured if getattr(f, name) is not None]
        if values:
            limits[name] = round(max(values) * margin, 4)
    return limits


def calibrate_model(loaded: Any, images: Iterable[np.ndarray], margin: float = MARGIN) -> dict[str, float]:
    """``calibrate`` on a model's predictions of ``images`` (2D, its own domain, unseen in
    training): the limits to record as its ``familiarity_limits``."""
    from .inference import predict

    signals = []
    for image in images:
        p = predict(loaded, image, outputs=("branches", "probabilities"))
        signals.append(measure_familiarity(p.probabilities, p.disagreement, image))
    return calibrate(signals, margin)


def measure_familiarity(
    probabilities: np.ndarray | None,
    disagreement: np.ndarray | None,
    image: np.ndarray | None = None,
    limits: dict[str, float] | None = None,
) -> Familiarity:
    """The signals from a prediction's ``probabilities`` (*lead, C, H, W) and ``disagreement``
    (*lead, H, W), and the input ``image`` (last two axes spatial); any may be ``None``.
    ``limits``: the model's (``limits_for``)."""
    uncertainty = None
    if probabilities is not None:
        uncertainty = float(1.0 - np.asarray(probabilities, dtype=np.float64).max(axis=-3).mean())
    mean_disagreement = None if disagreement is None else float(np.mean(disagreement, dtype=np.float64))
    noise = None if image is None else relative_noise(image)
    return Familiarity(uncertainty, mean_disagreement, noise, limits)


def training_summary(name: str, class_names: list[str], training: dict[str, Any]) -> str:
    """What a model was trained on, from a checkpoint's ``ModelInfo`` fields, in a few lines;
    whatever the ``training`` record lacks is left out."""
    lines = [f"{name or 'unnamed model'}: classes {', '.join(class_names)}"]
    if training.get("data"):
        lines.append(f"trained on {training['data']}")
    elif training.get("train_labeled_pixels"):
        lines.append(f"trained on {training['train_labeled_pixels']:,} labelled pixels")
    if training.get("fine_tuned_from"):
        lines.append(f"fine-tuned from {training['fine_tuned_from']}")
    scores = [
        f"{label} mIoU {training[key]:.2f}"
        for key, label in (("test_miou", "test"), ("best_val_miou", "validation"))
        if isinstance(training.get(key), (int, float))
    ]
    if scores:
        lines.append(", ".join(scores))
    if len(lines) == 1:
        lines.append("no record of its training data")
    return "\n".join(lines)
