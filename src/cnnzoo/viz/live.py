"""Live training progress in a notebook: a progress bar and the course's curves in one output area
that is replaced in place, never appended to.

It needs nothing but IPython's display protocol (`display(..., display_id=True)` and updates to that
id), which classic Jupyter, JupyterLab, VS Code and Colab all implement; no ipywidgets, so no
front-end extension and no "IProgress not found" warning.
"""

from __future__ import annotations

import time
from typing import Any

from cnnzoo.train.callbacks import AsyncLossReadout, Callback
from cnnzoo.viz import notebook

BAR_INTERVAL_S = 0.25  # the bar is cheap HTML: four updates a second read as live
MIN_PLOT_INTERVAL_S = 0.5
PLOT_BUDGET = 0.1  # the curves are redrawn at most this fraction of the time, so the CPU keeps training


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class LiveProgress(Callback):
    """Shows a training run in the notebook cell that runs it.

    `curves=False` shows the bar and the table of finished epochs only. The losses shown are read
    through `AsyncLossReadout`, so no step ever waits for the GPU: on CUDA they lag a few steps."""

    shows_epochs = True  # its table replaces the printed epoch lines
    # `fit` calls on_step_end every this many steps: once their speed is known, the steps of half a
    # BAR_INTERVAL_S, so the bar still redraws as often and the steps between run with no host work.
    step_every = 1

    def __init__(self, curves: bool = True):
        self.curves = curves
        self.handle = None
        self.png: bytes | None = None
        self.drawn: tuple[int, int, int] | None = None  # what the current picture shows
        self.epoch_losses: list[float] = []
        self.plot_interval = MIN_PLOT_INTERVAL_S
        self.last_update = self.last_plot = 0.0
        self.last_epoch_wall: float | None = None
        self.status = "starting"

    # ---- callback hooks ----
    def on_fit_start(self, state) -> None:
        from IPython.display import display

        self.readout = AsyncLossReadout(state.runtime.device)
        self.fit_start = time.perf_counter()
        self.status = f"epoch {state.epoch + 1}/{state.config.epochs}"
        if self.curves:
            self._draw(state)
        self.handle = display(self._bundle(state), raw=True, display_id=True)

    def on_epoch_start(self, state) -> None:
        self.epoch_losses = []
        self.epoch_wall_start = time.perf_counter()
        self.status = f"epoch {state.epoch + 1}/{state.config.epochs}"

    def on_step_end(self, state) -> None:
        now = time.perf_counter()
        self.step_every = max(1, int(BAR_INTERVAL_S / 2 * (state.step + 1) / max(now - state.epoch_start, 1e-9)))
        if now - self.last_update < BAR_INTERVAL_S:
            return
        losses = self.readout(state.losses, tag=(state.epoch, state.step + 1))
        if losses is not None and self.readout.tag[0] == state.epoch:
            self.epoch_losses = losses.flatten()[: self.readout.tag[1]].tolist()
        if self.curves and now - self.last_plot >= self.plot_interval:
            self._draw(state)
        self._show(state, now)

    def on_epoch_end(self, state) -> None:
        self.epoch_losses = []  # the history holds the whole epoch now
        self.last_epoch_wall = time.perf_counter() - self.epoch_wall_start
        if self.curves:
            self._draw(state)
        self._show(state, time.perf_counter())

    def on_fit_end(self, state) -> None:
        done = len(state.history.epochs)
        planned = state.config.epochs
        elapsed = _clock(time.perf_counter() - self.fit_start)
        if done >= planned:
            self.status = f"done: {done} epochs in {elapsed}"
        elif state.stop_reason:  # a callback ended it on purpose (early stopping, a fine-tuning phase)
            self.status = f"{state.stop_reason}: {done} of {planned} epochs in {elapsed}"
        else:
            self.status = f"stopped in epoch {state.epoch + 1}/{planned} after {elapsed}; {done} epochs finished"
        self.epoch_losses = []
        if self.curves:
            self._draw(state)
        if self.handle is not None:
            self._show(state, time.perf_counter(), final=True)

    # ---- drawing ----
    def _draw(self, state) -> None:
        from cnnzoo.viz.plots import training_figure

        history = state.history
        drawn = (len(history.batch_loss), len(history.epochs), len(self.epoch_losses))
        if drawn == self.drawn:  # e.g. the end of fit right after the last epoch's end
            return
        self.drawn = drawn
        start = time.perf_counter()
        steps = history.steps_per_epoch or state.steps_per_epoch
        fig = training_figure(history.batch_loss + self.epoch_losses, steps, history.rows(), state.config.epochs)
        self.png = notebook.figure_png(fig)
        cost = time.perf_counter() - start
        self.last_plot = time.perf_counter()
        self.plot_interval = max(MIN_PLOT_INTERVAL_S, cost / PLOT_BUDGET)

    def _show(self, state, now: float, final: bool = False) -> None:
        self.last_update = now
        if self.handle is not None:
            self.handle.update(self._bundle(state, final), raw=True)

    def _line(self, state, final: bool) -> tuple[str, float]:
        """The progress line and how far the bar is filled (0..1)."""
        if final:
            return self.status, len(state.history.epochs) / max(state.config.epochs, 1)
        steps = max(state.steps_per_epoch, 1)
        done = min(state.step + 1, steps) if state.seen else 0
        elapsed = max(time.perf_counter() - state.epoch_start, 1e-9)
        parts = [f"{done}/{steps} batches", f"{state.seen / elapsed:,.0f} img/s" if state.seen else None]
        if self.epoch_losses:
            recent = self.epoch_losses[-20:]
            parts.append(f"loss {sum(recent) / len(recent):.3f}")
        if done:
            epoch_left = (steps - done) * elapsed / done
            later = state.config.epochs - state.epoch - 1
            per_epoch = self.last_epoch_wall if self.last_epoch_wall is not None else steps * elapsed / done
            parts.append(f"ETA {_clock(epoch_left)} this epoch, {_clock(epoch_left + later * per_epoch)} in all")
        return f"{self.status}  " + " · ".join(p for p in parts if p), done / steps

    def _bundle(self, state, final: bool = False) -> dict[str, Any]:
        line, fraction = self._line(state, final)
        rows = state.history.rows()
        bar = (f'<div class="progress"><div class="bar"><i style="width:{fraction * 100:.1f}%"></i></div>'
               f"<span>{notebook.escape(line)}</span></div>")
        body = bar + (notebook.img_tag(self.png, "training curves") if self.png else "")
        if rows:
            body += notebook.epoch_table_html(rows)
        text = line + ("\n\n" + notebook.epoch_table_text(rows) if rows else "")
        return {"text/plain": text, "text/html": notebook.fragment(body)}
