"""Compute device choice (CUDA, then Apple MPS, then the CPU) and the precision a device predicts in."""

from __future__ import annotations

import torch

from .errors import SettingsError


def available_devices() -> list[str]:
    """Names of the devices this machine can run on, best first (``cpu`` always last)."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names + ["cpu"]


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` picks cuda → mps → cpu; otherwise the named device, checked to exist."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device(available_devices()[0])
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise SettingsError(
            f"{name!r} is not a device; use auto, cpu, cuda, cuda:N or mps (here: {', '.join(available_devices())})"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError(f"device {name!r} was asked for but CUDA is not available here; use 'auto' or 'cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SettingsError(f"device {name!r} does not exist; available: {', '.join(available_devices())}")
    if device.type == "mps" and "mps" not in available_devices():
        raise SettingsError(f"device {name!r} was asked for but MPS is not available here; use 'auto' or 'cpu'")
    return device


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX tiles or AVX512-BF16), where autocast to
    it speeds convolutions up; elsewhere bfloat16 is emulated and slower than float32."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def cpu_bfloat16_applies(enabled: bool, device: torch.device) -> bool:
    """Whether a ``cpu_bfloat16`` setting takes effect on ``device``: a CPU with native bfloat16."""
    return enabled and device.type == "cpu" and cpu_has_native_bfloat16()


def describe_device(device: torch.device) -> str:
    """A plain-words name for the device, e.g. ``cuda:0 (NVIDIA H100)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'' if threads == 1 else 's'})"


PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""``precision`` choices: float32, or autocast to a 16-bit type (``"auto"``: ``default_precision``)."""

MEETS_THE_BAR: frozenset[tuple[str, str]] = frozenset()
"""(device type, 16-bit precision) pairs whose labels met issue #41's bar in every case of
``docs/results/performance/precision.md`` (``python -m benchmarks.performance.precision``: held-out
images of every set at every light level and the sample tiles, the bundled model and one fine-tuned
from strokes; the labels agree with float32's on at least 99.9 % of the pixels and mIoU moves by
less than 0.001). None did, so "auto" is float32 everywhere: on the CPU, bfloat16 fell below the bar
in 12 of 20 cases (down to 97.5 % agreement, |ΔmIoU| up to 0.005) and float16 in 4 (down to
98.4 %, all vnc-em); CUDA has not been measured (tests/engine/test_devices.py keeps this set equal
to the recorded verdicts)."""


def native_precisions(device: torch.device) -> tuple[str, ...]:
    """The 16-bit types ``device`` computes in hardware, where they are faster than float32
    (elsewhere they are emulated, and slower)."""
    if device.type == "cuda":
        bfloat16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return ("float16", "bfloat16") if bfloat16 else ("float16",)
    if device.type == "mps":
        return ("float16",)
    return ("bfloat16",) if device.type == "cpu" and cpu_has_native_bfloat16() else ()


def default_precision(device: torch.device) -> str:
    """What ``"auto"`` predicts in on ``device``: a 16-bit type that it computes natively and that
    met the bar (``MEETS_THE_BAR``), else float32."""
    return next((p for p in native_precisions(device) if (device.type, p) in MEETS_THE_BAR), "float32")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``"auto"``/``None``: ``default_precision(device)``; otherwise the named precision, checked."""
    if precision in (None, "auto"):
        return default_precision(device)
    if precision not in PRECISIONS:
        raise SettingsError(f"precision must be 'auto' or one of {list(PRECISIONS)}, got {precision!r}")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The 16-bit type a resolved ``precision`` autocasts to (``None``: float32), checked."""
    if precision not in PRECISIONS:
        raise SettingsError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def precision_note(precision: str, device: torch.device) -> str:
    """A warning when a 16-bit ``precision`` is emulated on ``device`` (slower than float32), else ""."""
    if PRECISIONS.get(precision) is None or precision in native_precisions(device):
        return ""
    return (
        f"{precision} is emulated on this {device.type} (no hardware support): slower than "
        f"{default_precision(device)}, which 'auto' picks here"
    )
