"""A live plot of training loss and validation mIoU (matplotlib embedded in Qt).

A full matplotlib draw takes tens of milliseconds, more on a busy CPU, and runs on the GUI
thread; so the axes limits grow in coarse steps (x doubles, the log-scaled loss axis widens
by factors of 2) and between those rare full draws only the lines are redrawn into the
canvas buffer (blitting, about a millisecond), shown with the dock's next repaint.
"""

from __future__ import annotations

import math
import time

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..engine.events import EpochEnd, StepEnd

BACKGROUND, TEXT, LOSS, MIOU = "#262930", "#d0d0d0", "#ffa94d", "#74c0fc"
INITIAL_Y = (0.1, 10.0)
MAX_INITIAL_EPOCHS = 64
"""Runs of up to this many epochs get their whole epoch axis from the start."""
STEP_REDRAW_INTERVAL_S = 0.25
"""Step losses are drawn at most this often (epoch ends at once): each repaint costs the GUI thread."""



def score_name(event: EpochEnd) -> str:
    """What an epoch's mIoU measures, in words (``EpochEnd.scored_on``)."""
    return "validation mIoU" if event.scored_on == "validation" else "mIoU on the painted labels"

class LossPlot(FigureCanvasQTAgg):
    """Loss per step (thin) and per epoch (dots) on a log axis, validation mIoU (0..1) on the right.

    The plotted numbers are kept in plain lists (``steps``, ``step_loss``, ``epochs``,
    ``epoch_loss``, ``val_miou``) so they can be read back.
    """

    def __init__(self) -> None:
        figure = Figure(figsize=(4, 2.4), facecolor=BACKGROUND)
        figure.subplots_adjust(
            left=0.16, right=0.84, bottom=0.2, top=0.95
        )  # fixed: layout engines cost a draw
        super().__init__(figure)
        self.setFixedHeight(220)  # a resize costs a full draw: keep the height fixed
        self._loss_axes = figure.add_subplot()
        self._miou_axes = self._loss_axes.twinx()
        for axes in (self._loss_axes, self._miou_axes):
            axes.set_facecolor(BACKGROUND)
            axes.tick_params(colors=TEXT, labelsize=8)
            for spine in axes.spines.values():
                spine.set_color("#707070")
        self._loss_axes.set_yscale("log")
        self._loss_axes.set_xlabel("epoch", color=TEXT, fontsize=8)
        self._loss_axes.set_ylabel("training loss", color=LOSS, fontsize=8)
        self._miou_axes.set_ylabel("validation mIoU", color=MIOU, fontsize=8)
        self._miou_axes.set_ylim(0, 1)
        line = dict(animated=True)  # drawn by blitting only
        (self._step_line,) = self._loss_axes.plot([], [], color=LOSS, alpha=0.35, lw=0.8, **line)
        (self._epoch_line,) = self._loss_axes.plot([], [], "o-", color=LOSS, ms=3, lw=1.2, **line)
        (self._miou_line,) = self._miou_axes.plot([], [], "s-", color=MIOU, ms=3, lw=1.2, **line)
        self._background = None
        self._last_blit = 0.0
        self._initial_x = (0.0, 1.0)
        self.mpl_connect("draw_event", self._on_draw)
        self.clear()

    def clear(self) -> None:
        """Forget the data of a previous run."""
        self.steps: list[float] = []
        self.step_loss: list[float] = []
        self.epochs: list[int] = []
        self.epoch_loss: list[float] = []
        self.val_miou: list[float] = []
        self._set_axes(self._initial_x, INITIAL_Y)

    def set_epochs(self, epochs: int) -> None:
        """Size the epoch axis for a run of ``epochs`` (call when the setting changes, not at start)."""
        self._initial_x = (0.0, float(min(epochs, MAX_INITIAL_EPOCHS)))
        if not self.steps:
            self._set_axes(self._initial_x, self._loss_axes.get_ylim())

    def _set_axes(self, x: tuple[float, float], y: tuple[float, float]) -> None:
        if (self._loss_axes.get_xlim(), self._loss_axes.get_ylim()) == (x, y):
            self._blit()  # the axes of the last full draw: no need for another
        else:
            self._loss_axes.set_xlim(*x)
            self._loss_axes.set_ylim(*y)
            self.draw_idle()

    @property
    def score_label(self) -> str:
        """The mIoU axis's label: what the scores measure (``score_name``)."""
        return self._miou_axes.get_ylabel()

    def add(self, event: StepEnd | EpochEnd) -> None:
        """Record a training event and update the plot."""
        if isinstance(event, StepEnd):
            x, loss = event.epoch - 1 + event.step / event.steps_per_epoch, event.loss
            self.steps.append(x)
            self.step_loss.append(loss)
        else:
            x, loss = event.epoch, event.train_loss
            self.epochs.append(event.epoch)
            self.epoch_loss.append(loss)
            self.val_miou.append(math.nan if event.val_miou is None else event.val_miou)
            if self.score_label != score_name(event):
                self._miou_axes.set_ylabel(score_name(event), color=MIOU, fontsize=8)
                self.draw_idle()
        if self._extend_limits(x, loss, event.epochs):
            self.draw_idle()
        elif isinstance(event, EpochEnd) or time.monotonic() - self._last_blit >= STEP_REDRAW_INTERVAL_S:
            self._blit()

    def _extend_limits(self, x: float, loss: float, total_epochs: int) -> bool:
        """Widen the axes (coarsely) to include a new point; whether they changed."""
        changed = False
        _, xmax = self._loss_axes.get_xlim()
        if x > xmax:
            xmax = max(2 * xmax, x)  # the x axis doubles: few full draws in long runs
            self._loss_axes.set_xlim(0, total_epochs if xmax >= total_epochs / 2 else xmax)
            changed = True
        low, high = self._loss_axes.get_ylim()
        if math.isfinite(loss) and loss > 0 and not low <= loss <= high:
            low, high = min(low, loss / 2), max(high, loss * 2)
            self._loss_axes.set_ylim(low, high)
            changed = True
        return changed

    def _draw_lines(self) -> None:
        self._step_line.set_data(self.steps, self.step_loss)
        self._epoch_line.set_data(self.epochs, self.epoch_loss)
        self._miou_line.set_data(self.epochs, self.val_miou)
        for line in (self._step_line, self._epoch_line, self._miou_line):
            line.axes.draw_artist(line)

    def _on_draw(self, _event) -> None:
        """After a full draw (new limits, resize): keep the empty axes, then draw the lines."""
        self._background = self.copy_from_bbox(self.figure.bbox)
        self._draw_lines()

    def _blit(self) -> None:
        if self._background is None:
            self.draw_idle()
            return
        self._last_blit = time.monotonic()
        self.restore_region(self._background)
        self._draw_lines()
        self.update()  # not blit()'s immediate repaint: Qt merges it with the dock's other updates
