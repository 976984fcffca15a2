"""CPU threads for work started from the GUI: torch gets every core on a machine of two or fewer,
one core less above that, at a lower CPU priority than the event loop; torch's one-off optimizer
set-up is done early, in the background; and while jobs run, Python's full garbage collections
skip the viewer's objects."""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Generator
from contextlib import contextmanager

import torch

_warm_up: threading.Thread | None = None
_jobs_running = 0
_jobs_lock = threading.Lock()


KEEP_A_CORE_ABOVE = 2
"""Above this many torch threads, work started from the GUI leaves one to the event loop."""


def gui_torch_threads() -> int:
    """torch's usual thread count, minus one above ``KEEP_A_CORE_ABOVE``.

    Measured on a 2-core machine (docs/results/variants/scribbles/README.md, "Two torch threads"):
    fine-tuning on both cores made 1.5-1.8x the steps of one and scored +3.9 [+0.9, +6.9] mIoU
    points at 30 s. The event loop keeps its responsiveness because jobs run below it
    (``below_the_event_loop``); on more cores one kept free costs little.
    """
    usual = torch.get_num_threads()
    return usual if usual <= KEEP_A_CORE_ABOVE else usual - 1


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


JOB_NICENESS = 10
"""How much lower than the event loop's the CPU priority of a job's threads is (Linux ``nice``)."""


@contextmanager
def below_the_event_loop() -> Generator[None, None, None]:
    """Run the block, in the calling thread and the torch threads it starts, ``JOB_NICENESS``
    lower in CPU priority (Linux only: elsewhere nice values are per process).

    With torch on every core, the GUI thread has to win a core back whenever it has work: on a
    2-core machine under xvfb, un-niced training left event-loop gaps of up to 221 ms, 3 of 6 Train
    presses over 100 ms; niced, 60-94 ms over 6 presses, with as many training steps
    (``benchmarks/loop/stall.py``; docs/results/performance.md). Torch threads that this thread started
    before keep their priority. Restoring the priority afterwards needs privileges; without them
    the pool thread stays low until Qt retires it (30 s idle).
    """
    thread = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, thread) if sys.platform == "linux" else None
        if before is not None:
            os.setpriority(os.PRIO_PROCESS, thread, min(19, before + JOB_NICENESS))
    except OSError:
        before = None
    try:
        yield
    finally:
        if before is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, thread, before)
            except OSError:
                pass


@contextmanager
def gui_job(threads: int | None) -> Generator[None, None, None]:
    """A job started from the GUI: ``threads`` torch threads (``torch_threads``), below the event
    loop (``below_the_event_loop``). Enter it in the worker thread."""
    with torch_threads(threads), below_the_event_loop():
        yield


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
