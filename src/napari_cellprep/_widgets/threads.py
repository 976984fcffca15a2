"""CPU threads for work started from the GUI: torch gets one core less, the event loop keeps one;
torch's one-off optimizer set-up is done early, in the background; and while jobs run, Python's
full garbage collections skip the viewer's objects."""

from __future__ import annotations

import gc
import threading
from collections.abc import Generator
from contextlib import contextmanager

import torch

_warm_up: threading.Thread | None = None
_jobs_running = 0
_jobs_lock = threading.Lock()


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


def job_started() -> None:
    """Move every object that exists now out of the garbage collector's view (``gc.freeze``)
    until the last running job has ended.

    A training job allocates enough Python objects to trigger full collections, and a full
    collection walks every object of the process with the GIL held: with a napari viewer that
    froze the event loop for about 225 ms. Frozen, the viewer's objects are skipped; what the
    job makes is still collected as usual.
    """
    global _jobs_running
    with _jobs_lock:
        if _jobs_running == 0:
            gc.freeze()
        _jobs_running += 1


def job_ended() -> None:
    """The counterpart of ``job_started``: the last job to end gives the objects back (``gc.unfreeze``)."""
    global _jobs_running
    with _jobs_lock:
        _jobs_running = max(0, _jobs_running - 1)
        if _jobs_running == 0:
            gc.unfreeze()
