"""Compute device choice: CUDA, then Apple MPS, then the CPU."""

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
