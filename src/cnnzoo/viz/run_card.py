"""A run directory opened from Python: `cnnzoo.open_run(path)` displays as the run's report card."""

from __future__ import annotations

import math
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnzoo.errors import CnnzooError
from cnnzoo.train.history import steps_per_epoch
from cnnzoo.train.rundir import RunDir
from cnnzoo.viz import notebook


def open_run(path: str | os.PathLike) -> RunCard:
    """The run directory at `path`, to look at: as a cell's last line it shows its report card
    (accuracies, curves, per-class accuracy, confusion matrix); `print()` gives the same in text."""
    return RunCard(path)


class RunCard:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.run = RunDir(self.path)
        if not self.run.config_path.is_file():
            raise CnnzooError(f"{str(self.path)!r} is not a cnnzoo run directory (it has no {RunDir.CONFIG}); "
                              "pass a folder written by `cnnzoo train` or `cnnzoo.train_run`.")
        self.train_config, self.config = self.run.read_config()  # checked against the schema: one sentence if damaged

    @cached_property
    def metrics(self) -> list[dict[str, int | float | None]]:
        """metrics.csv's rows (one per finished epoch), checked and converted."""
        return self.run.read_metrics() if self.run.metrics_path.is_file() else []

    @cached_property
    def evaluation(self) -> dict[str, Any] | None:
        """evaluation.json (written when training ends) checked field by field, or None before that."""
        return self.run.read_evaluation() if self.run.evaluation_path.is_file() else None

    @cached_property
    def batch_rows(self) -> list[dict[str, int | float | None]]:
        return self.run.read_batch_loss() if self.run.batch_loss_path.is_file() else []

    @property
    def batch_loss(self) -> list[float]:
        return [float(r["loss"]) for r in self.batch_rows]

    @property
    def title(self) -> str:
        return f"{self.train_config.model} on {self.train_config.dataset}"

    @property
    def test_accuracy(self) -> float | None:
        if self.evaluation is not None and self.evaluation.get("accuracy") is not None:
            return float(self.evaluation["accuracy"])
        last = self.metrics[-1].get("test_acc") if self.metrics else None
        return float(last) if last else None

    def figure(self):
        """The run's curves (loss per batch, accuracy per epoch) as one Figure."""
        from cnnzoo.viz.plots import training_figure

        return training_figure(self.batch_loss, steps_per_epoch(r["epoch"] for r in self.batch_rows), self.metrics)

    def _facts(self) -> list[tuple[str, str]]:
        last = self.metrics[-1] if self.metrics else {}
        facts = [("test accuracy", notebook.percent(self.test_accuracy))]
        if last.get("val_acc"):
            facts.append(("validation accuracy", notebook.percent(last["val_acc"])))
        facts += [("train accuracy", notebook.percent(last.get("train_acc"))),
                  ("epochs", f"{last.get('epoch', 0)} of {self.train_config.epochs}"),
                  ("training time", f"{sum(float(r['time_s']) for r in self.metrics if r.get('time_s')):.1f} s")]
        if isinstance(self.config.get("num_params"), int):
            facts.append(("parameters", f"{self.config['num_params']:,}"))
        if self.train_config.recipe:
            facts.append(("recipe", self.train_config.recipe))
        return facts

    def _repr_html_(self) -> str:
        cards = "".join(f'<div class="card"><span>{notebook.escape(k)}</span><b>{notebook.escape(v)}</b></div>'
                        for k, v in self._facts())
        parts = [f"<h4>{notebook.escape(self.title)} · {notebook.escape(self.path.name)}</h4>",
                 f'<div class="cards">{cards}</div>']
        if self.metrics or self.batch_loss:
            parts.append(notebook.img_tag(notebook.figure_png(self.figure()), "training curves"))
            parts.append(notebook.epoch_table_html(self.metrics))
        else:
            parts.append('<p class="note">No epoch has finished yet.</p>')
        evaluation = self.evaluation
        if evaluation is not None and evaluation.get("confusion"):
            from cnnzoo.viz.plots import confusion_figure

            names = notebook.class_names(evaluation.get("classes") or [], len(evaluation["confusion"]))
            parts += ["<h4>Accuracy per class</h4>", notebook.per_class_html(evaluation["confusion"], names),
                      "<h4>Confusion matrix</h4>",
                      notebook.img_tag(notebook.figure_png(confusion_figure(evaluation["confusion"], names)),
                                       "confusion matrix")]
        else:
            parts.append('<p class="note">No evaluation.json yet: the run has not finished.</p>')
        parts.append(f'<p class="note">Folder: {notebook.escape(self.path)} · full report: '
                     "<code>cnnzoo report</code> writes report.html there.</p>")
        return notebook.fragment("".join(parts))

    def __str__(self) -> str:
        lines = [f"{self.title}  ({self.path})", *(f"  {k}: {v}" for k, v in self._facts())]
        if self.metrics:
            lines += ["", notebook.epoch_table_text(self.metrics)]
        evaluation = self.evaluation
        if evaluation is not None and evaluation.get("confusion"):
            loss = math.nan if evaluation.get("loss") is None else evaluation["loss"]  # the schema allows null
            lines += ["", notebook.evaluation_text(float(evaluation["accuracy"]), float(loss),
                                                   evaluation["confusion"], evaluation.get("classes") or [])]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))

    def __repr__(self) -> str:
        return f"RunCard({str(self.path)!r})"

    def report(self) -> Path:
        """Write (or refresh) the run's self-contained report.html and return its path."""
        from cnnzoo.viz.report import write_report

        return write_report(self.path)
