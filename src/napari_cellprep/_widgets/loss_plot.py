"""A live plot of training loss and validation mIoU (matplotlib embedded in Qt)."""

from __future__ import annotations

import time

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..engine.events import EpochEnd, StepEnd

REDRAW_INTERVAL_S = 0.5
"""Step losses redraw at most this often, so fast steps cannot flood the event loop."""


class LossPlot(FigureCanvasQTAgg):
    """Loss per step (thin) and per epoch (dots) on the left axis, validation mIoU on the right.

    The plotted numbers are kept in plain lists (``steps``, ``step_loss``, ``epochs``,
    ``epoch_loss``, ``val_miou``) so they can be read back.
    """

    def __init__(self) -> None:
        figure = Figure(figsize=(4, 2.6), layout="constrained", facecolor="#262930")
        super().__init__(figure)
        self.setMinimumHeight(200)
        self._loss_axes = figure.add_subplot()
        self._miou_axes = self._loss_axes.twinx()
        for axes in (self._loss_axes, self._miou_axes):
            axes.set_facecolor("#262930")
            axes.tick_params(colors="#d0d0d0", labelsize=8)
            for spine in axes.spines.values():
                spine.set_color("#707070")
        self._loss_axes.set_xlabel("epoch", color="#d0d0d0", fontsize=8)
        self._loss_axes.set_ylabel("training loss", color="#ffa94d", fontsize=8)
        self._miou_axes.set_ylabel("validation mIoU", color="#74c0fc", fontsize=8)
        self._miou_axes.set_ylim(0, 1)
        (self._step_line,) = self._loss_axes.plot([], [], color="#ffa94d", alpha=0.35, lw=0.8)
        (self._epoch_line,) = self._loss_axes.plot([], [], "o-", color="#ffa94d", ms=3, lw=1.2)
        (self._miou_line,) = self._miou_axes.plot([], [], "s-", color="#74c0fc", ms=3, lw=1.2)
        self._last_draw = 0.0
        self.clear()

    def clear(self) -> None:
        """Forget the data of a previous run."""
        self.steps: list[float] = []
        self.step_loss: list[float] = []
        self.epochs: list[int] = []
        self.epoch_loss: list[float] = []
        self.val_miou: list[float] = []
        self._refresh(force=True)

    def add(self, event: StepEnd | EpochEnd) -> None:
        """Record a training event and redraw (step events at most every ``REDRAW_INTERVAL_S``)."""
        if isinstance(event, StepEnd):
            self.steps.append(event.epoch - 1 + event.step / event.steps_per_epoch)
            self.step_loss.append(event.loss)
            self._refresh(force=False)
        else:
            self.epochs.append(event.epoch)
            self.epoch_loss.append(event.train_loss)
            self.val_miou.append(float("nan") if event.val_miou is None else event.val_miou)
            self._refresh(force=True)

    def _refresh(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_INTERVAL_S:
            return
        self._last_draw = now
        self._step_line.set_data(self.steps, self.step_loss)
        self._epoch_line.set_data(self.epochs, self.epoch_loss)
        self._miou_line.set_data(self.epochs, self.val_miou)
        self._loss_axes.relim()
        self._loss_axes.autoscale_view()
        self.draw_idle()
