"""The run controls both docks share: a Run and a Stop button, a progress bar and a status line,
and the one background worker they drive (its lifecycle, progress, stop and errors)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import notification_manager, show_error
from qtpy.QtWidgets import QSizePolicy

from ..engine.errors import CellprepError
from ..engine.threads import job_ended, job_started
from .about import version_label

INVALID_STYLE = "border: 1px solid #e0463c;"
"""How a field that cannot work is marked (a thin red frame)."""


class RunControls(Container):
    """Run/Stop buttons, progress and status for one background job at a time.

    ``check(problems)`` validates as the user types: the fields named in ``problems`` are
    marked, Run is disabled, and the first problem's reason is shown under the buttons.

    ``stop`` sets ``stop_event``, which engine generators check to end cleanly (training keeps
    its best model); with ``abort=True`` the worker is also quit at its next yield, so it
    returns nothing. A ``CellprepError`` from the job is shown as its message; any other
    exception is a bug and goes to napari's notifications with its traceback.
    """

    def __init__(self, run_text: str, stop_text: str, *, abort: bool, extra_buttons: tuple = ()) -> None:
        self.run_button = PushButton(text=run_text)
        self.stop_button = PushButton(text=stop_text, enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # long messages wrap instead of resizing the dock
        self.blocked = Label(value="")  # why Run is disabled, while a field cannot work
        self.blocked.native.setWordWrap(True)
        self.blocked.native.setStyleSheet("color: #e0463c;")
        self.blocked.visible = False
        self.problem = ""  # why Run is disabled now ("" when every field can work)
        self._marked: list = []
        self.status.native.setMinimumHeight(4 * self.status.native.fontMetrics().lineSpacing())
        buttons = Container(  # the plugin's version at the right end: every dock shows it
            widgets=[self.run_button, self.stop_button, *extra_buttons, version_label()],
            layout="horizontal",
            labels=False,
        )
        super().__init__(widgets=[buttons, self.blocked, self.progress, self.status], labels=False)
        for fixed in (buttons, self.progress):  # a crowded dock squeezes the status, never these
            fixed.native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.abort = abort
        self.stop_event = threading.Event()
        self.worker: GeneratorWorker | None = None
        self._on_idle: list[Callable[[], None]] = []
        stop = self.stop_event
        self.native.destroyed.connect(lambda *_: stop.set())  # napari closed mid-run: end the worker
        self.stop_button.changed.connect(lambda: self.stop())

    def check(self, problems: list[tuple[Any, str]]) -> bool:
        """Mark the fields of ``problems`` ((widget, reason) pairs; the first reason is shown)
        and unmark the others; Run is enabled only without problems. Returns whether the form
        can run."""
        for widget in self._marked:
            widget.native.setStyleSheet("")
        self._marked = [widget for widget, _ in problems if widget is not None]
        for widget in self._marked:
            widget.native.setStyleSheet(INVALID_STYLE)
        self.problem = problems[0][1] if problems else ""
        self.blocked.value = self.problem
        self.blocked.visible = bool(problems)
        self.run_button.enabled = not self.running and not problems
        self.run_button.tooltip = problems[0][1] if problems else None
        return not problems

    @property
    def running(self) -> bool:
        """Whether a job is running."""
        return self.worker is not None

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a job has ended (after its result or error)."""
        self._on_idle.append(callback)

    def start(
        self,
        job: Callable[..., Generator],
        *,
        busy: str,
        on_event: Callable[[Any], None],
        on_result: Callable[[Any], None],
        on_aborted: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Run ``job(**kwargs)`` (a generator function) in a worker thread; ``busy`` is the status."""
        if self.running:
            return
        self.stop_event.clear()
        # our own error handler replaces create_worker's, which would re-raise every error
        self.worker = create_worker(job, _start_thread=False, _connect={"errored": self._on_error}, **kwargs)
        self.worker.yielded.connect(on_event)
        self.worker.returned.connect(on_result)
        if on_aborted is not None:
            self.worker.aborted.connect(on_aborted)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.status.value = busy
        job_started()
        self.worker.start()

    def stop(self, message: str = "Stopping…") -> None:
        """Ask the running job to end (see the class docstring)."""
        if not self.running:
            return
        self.stop_event.set()
        if self.abort:
            self.worker.quit()
        self.stop_button.enabled = False
        self.status.value = message

    def show_progress(self, done: int, total: int) -> None:
        """Set the progress bar to ``done`` of ``total``."""
        self.progress.max = max(total, 1)
        self.progress.value = min(done, self.progress.max)

    def fail(self, message: str) -> None:
        """Show a problem the user can fix, in the status line and as a notification."""
        self.status.value = f"Error: {message}"
        show_error(message)

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, CellprepError):
            self.fail(str(exc))
            return
        self.status.value = f"Error (a bug, details in napari's notifications): {type(exc).__name__}: {exc}"
        notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running and not self.problem
        self.stop_button.enabled = running
        if running:
            self.progress.value = 0

    def _on_finished(self) -> None:
        job_ended()
        self.worker = None
        self._set_running(False)
        for callback in self._on_idle:
            callback()
