"""How many torch threads work started from the GUI gets, and at what CPU priority."""

import os
import sys
import threading

import pytest
import torch

from napari_cellprep.engine import threads


@pytest.mark.parametrize("usual, expected", [(1, 1), (2, 2), (3, 2), (4, 3), (16, 15)])
def test_gui_threads_use_every_core_up_to_two_then_keep_one(monkeypatch, usual, expected):
    monkeypatch.setattr(torch, "get_num_threads", lambda: usual)
    assert threads.gui_torch_threads() == expected


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with threads.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_gui_jobs_run_below_the_event_loop_and_come_back():
    seen = {}

    def job():
        thread = threading.get_native_id()
        seen["before"] = os.getpriority(os.PRIO_PROCESS, thread)
        with threads.gui_job(1):
            seen["during"] = os.getpriority(os.PRIO_PROCESS, thread)
            seen["torch"] = torch.get_num_threads()
        seen["after"] = os.getpriority(os.PRIO_PROCESS, thread)

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    assert seen["during"] == min(19, seen["before"] + threads.JOB_NICENESS) and seen["torch"] == 1
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == seen["before"]  # the caller is untouched
    if os.geteuid() == 0:  # restoring a priority needs privileges
        assert seen["after"] == seen["before"]
