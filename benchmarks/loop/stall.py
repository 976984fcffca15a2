"""Measure how long napari's event loop stalls while the Train dock trains (target: < 100 ms).

A 10 ms QTimer records the gaps between its ticks from the moment the worker has started until
it has finished (Stop included); the longest gap is the worst freeze a user would feel. The
Train button's own work on the GUI thread (input checks, preview layer) is timed separately.
The same probe also runs while the dock opens (torch's one-off optimizer warm-up runs then, in
the background) and idle before training, as a baseline for what the machine itself adds.
Run under a virtual display (never QT_QPA_PLATFORM=offscreen):

    xvfb-run -a -s "-screen 0 1920x1200x24" python -m benchmarks.loop.stall --seconds 30

By default it fine-tunes the bundled model with the dock's own settings and the live preview on,
as a user would, and also prints when the first preview appeared (``--start new`` trains a new model).

The image is a nist-phase tile with scribbles from its mask ($CELLPREP_DATA, else
../shared/data beside the repository), or synthetic disks when the data is absent.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (before Qt)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CELLPREP_DATA", REPO.parent / "shared" / "data")) / "nist-phase"


def image_and_mask() -> tuple[np.ndarray, np.ndarray, str]:
    images = sorted((DATA / "images").glob("*.tif"))
    if images:
        from napari_cellprep.engine.images.io import read_image, read_mask

        return read_image(images[0]), read_mask(DATA / "masks" / f"{images[0].stem}.png"), images[0].stem
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    mask = ((yy - 128) ** 2 + (xx - 100) ** 2 < 60**2).astype(np.uint8)
    image = (1000 + 2000 * mask + rng.normal(0, 300, mask.shape)).clip(0, 65535).astype(np.uint16)
    return image, mask, "synthetic disks"


class GapProbe:
    """A 10 ms QTimer that records the gaps between its ticks while Qt events are processed."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.gaps: list[float] = []
        self.ends: list[float] = []
        self._start = self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self.ends.append(now - self._start)
        self._last = now

    def run_until(self, condition) -> None:
        from qtpy.QtWidgets import QApplication

        while not condition():
            QApplication.processEvents()
            time.sleep(0.001)

    def run_for(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        self.run_until(lambda: time.perf_counter() >= end)

    def summary(self) -> str:
        self._timer.stop()
        ms = np.array(self.gaps) * 1000
        return (
            f"{ms.size} ticks; longest gap {ms.max():.0f} ms (ending {self.ends[int(ms.argmax())]:.1f} s in), "
            f"99th percentile {np.percentile(ms, 99):.0f} ms, "
            f"median {np.median(ms):.1f} ms, gaps over 100 ms: {int((ms > 100).sum())}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="train this long, then press Stop")
    parser.add_argument(
        "--start",
        choices=["fine-tune", "new"],
        default="fine-tune",
        help="fine-tune the bundled model with the dock's own settings (default), or train a new model "
        "with the settings below",
    )
    parser.add_argument("--width", type=int, default=16, help="network width of the new model")
    parser.add_argument("--depth", type=int, default=4, help="network depth of the new model")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per epoch (epoch ends redraw the plot)")
    parser.add_argument(
        "--baseline", type=float, default=5.0, help="first measure this long without training"
    )
    parser.add_argument(
        "--presses", type=int, default=2, help="train this many times in a row (a later press reuses the preview layer)"
    )
    parser.add_argument(
        "--preview", action=argparse.BooleanOptionalAction, default=True, help="the live preview (the dock's default: on)"
    )
    args = parser.parse_args(argv)

    import napari

    from napari_cellprep._widgets import train_widget
    from napari_cellprep.engine import threads

    image, mask, name = image_and_mask()
    labels = np.zeros(mask.shape, np.uint8)
    labels[::8] = mask[::8] + 1
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.add_image(image, name=name)
    viewer.add_labels(labels, name="scribbles")
    opening = GapProbe()
    _, widget = viewer.window.add_plugin_dock_widget("napari-cellprep", "Train")
    warm_up = threads.warm_up_optimizer()
    base = widget._base.value  # read from its file in the background when the dock opens
    opening.run_until(lambda: not warm_up.is_alive() and (base is None or base.loaded is not None))
    opening = opening.summary()

    def configure() -> None:
        if args.start == "new":
            widget._start.value = train_widget.Start.NEW
            widget._width.value, widget._depth.value = args.width, args.depth
            widget._epochs.value, widget._steps.value = 100_000, args.steps
            widget._batch.value, widget._patch.value = args.batch, args.patch
        else:
            widget._start.value = train_widget.Start.FINE_TUNE  # the form then holds the dock's settings
        widget._preview.value = args.preview

    previews: list[float] = []
    show = widget.preview.show
    widget.preview.show = lambda event: (previews.append(time.perf_counter()), show(event))

    probe = GapProbe()
    probe.run_for(args.baseline)
    baseline = probe.summary()

    for press in range(1, args.presses + 1):
        previews.clear()
        configure()
        started = time.perf_counter()
        widget.train()
        click = time.perf_counter() - started
        if widget.controls.worker is None:
            raise SystemExit(f"training did not start: {widget.controls.status.value}")
        probe = GapProbe()
        probe.run_for(args.seconds)
        widget.stop()
        probe.run_until(lambda: widget.controls.worker is None)
        elapsed = time.perf_counter() - started
        report(args, widget, press, elapsed, click, probe, [t - started for t in previews])
    print(f"event loop while the Train dock opens (and torch's optimizer warms up): {opening}")
    print(f"event loop while idle ({args.baseline:.0f} s): {baseline}")
    viewer.close()


def report(args, widget, press, elapsed, click, probe, previews) -> None:
    what = (
        f"width {args.width}, depth {args.depth}, batch {args.batch}×{args.patch}²"
        if args.start == "new"
        else f"fine-tuning the bundled model, batch {widget._batch.value}×{widget._patch.value}²"
    )
    print(
        f"press {press}: trained {elapsed:.1f} s: {len(widget.plot.step_loss)} steps, {len(widget.plot.epochs)} epochs "
        f"({what}, preview {args.preview}, "
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})"
    )
    print(
        f"press {press}: Train button (checks and set-up on the GUI thread, before the worker starts): "
        f"{click * 1000:.0f} ms"
    )
    print(f"press {press}: event loop while training:  {probe.summary()}")
    if previews:
        print(
            f"press {press}: live preview first shown {previews[0]:.1f} s after Train was pressed, "
            f"{len(previews)} in all"
        )


if __name__ == "__main__":
    main()
