"""CPU threads for work started from the GUI: torch gets one core less, the event loop keeps one;
and torch's one-off optimizer set-up is done early, in the background."""

from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import contextmanager

import torch

_warm_up: threading.Thread | None = None


def gui_torch_threads() -> int:
    """torch's usual thread count minus one (at least one)."""
    return max(1, torch.get_num_threads() - 1)


@contextmanager
def torch_threads(count: int | None) -> Generator[None, None, None]:
    """Run the block with ``count`` torch threads (``None``: unchanged), then restore.

    Enter it in the worker thread itself: OpenMP thread counts are per calling thread.
    """
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def warm_up_optimizer() -> threading.Thread:
    """Create a throw-away torch optimizer in a background thread, once per process.

    torch's first optimizer imports ``torch._dynamo`` (over a second of imports, some of which
    hold the GIL for 100+ ms). Done when a training dock opens, the user's first Train does not
    stall the event loop while the plot and progress bar are live.
    """
    global _warm_up
    if _warm_up is None:
        _warm_up = threading.Thread(
            target=lambda: torch.optim.Adam([torch.zeros(1, requires_grad=True)]),
            name="torch-optimizer-warm-up",
            daemon=True,
        )
        _warm_up.start()
    return _warm_up
