"""A run directory opened from Python: `cnnzoo.open_run(path)` displays as the run's report card."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.history import steps_per_epoch
from cnnzoo.train.rundir import RunDir
from cnnzoo.viz import notebook


def open_run(path: str | os.PathLike) -> RunCard:
    """The run directory at `path`, to look at: as a cell's last line it shows its report card
    (accuracies, curves, per-class accuracy, confusion matrix); `print()` gives the same in text."""
    return RunCard(path)


@dataclass(frozen=True)
class Fact:
    """One headline number of a run, as the notebook's card and the HTML report show it."""
    name: str  # the report's element id
    label: str
    text: str
    value: str | None = None  # the unrounded number behind `text`, kept in the report's data-value


def image_counts(evaluation: dict[str, Any] | None) -> dict[str, int]:
    """How many images each split's accuracy was measured on, as far as evaluation.json says."""
    if evaluation is None:
        return {}
    counts = {split: evaluation[f"{split}_images"] for split in ("train", "val")
              if isinstance(evaluation.get(f"{split}_images"), int)}
    if isinstance(evaluation.get("images"), int):
        counts["test"] = evaluation["images"]
    elif evaluation.get("confusion"):  # written before evaluation.json had the count
        counts["test"] = sum(map(sum, evaluation["confusion"]))
    return counts


def final_test_accuracy(metrics: list[dict[str, Any]], evaluation: dict[str, Any] | None) -> float | None:
    """evaluation.json's accuracy: that of the weights the run ended with (early stopping may have gone
    back to a better epoch); before it exists, the last epoch's."""
    if evaluation is not None and evaluation.get("accuracy") is not None:
        return float(evaluation["accuracy"])
    last = metrics[-1].get("test_acc") if metrics else None
    return None if last is None else float(last)


def run_facts(train_config: TrainConfig, config: dict[str, Any], metrics: list[dict[str, Any]],
              evaluation: dict[str, Any] | None) -> list[Fact]:
    """The headline numbers of a run from its checked files; each accuracy says how many images it is of."""
    counts = image_counts(evaluation)

    def on(split: str) -> str:
        return f" ({counts[split]:,} images)" if split in counts else ""

    last = metrics[-1] if metrics else {}
    test = final_test_accuracy(metrics, evaluation)
    facts = [Fact("test-accuracy", "test accuracy" + on("test"), notebook.percent(test),
                  None if test is None else str(test))]
    if last.get("val_acc") is not None:
        facts.append(Fact("val-accuracy", "validation accuracy" + on("val"), notebook.percent(last["val_acc"])))
    # Which training accuracy: the batches as trained (running) or the course's eval-mode re-run.
    mode = "eval mode" if config.get("train_acc") == "eval" else "running"
    facts += [Fact("train-accuracy", f"train accuracy, {mode}" + on("train"), notebook.percent(last.get("train_acc"))),
              Fact("epochs", "epochs", f"{last.get('epoch', 0)} of {train_config.epochs}"),
              Fact("training-time", "training time",
                   f"{sum(r['time_s'] for r in metrics):.1f} s" if metrics else "—")]
    if isinstance(config.get("num_params"), int):
        facts.append(Fact("parameters", "parameters", f"{config['num_params']:,}"))
    if train_config.recipe:
        facts.append(Fact("recipe", "recipe", train_config.recipe))
    return facts


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
        return final_test_accuracy(self.metrics, self.evaluation)

    def facts(self) -> list[Fact]:
        """The run's headline numbers, as its cards show them."""
        return run_facts(self.train_config, self.config, self.metrics, self.evaluation)

    def figure(self):
        """The run's curves (loss per batch, accuracy per epoch) as one Figure."""
        from cnnzoo.viz.plots import training_figure

        return training_figure(self.batch_loss, steps_per_epoch(r["epoch"] for r in self.batch_rows), self.metrics)

    def _repr_html_(self) -> str:
        cards = "".join(f'<div class="card"><span>{notebook.escape(fact.label)}</span>'
                        f'<b>{notebook.escape(fact.text)}</b></div>' for fact in self.facts())
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
        lines = [f"{self.title}  ({self.path})", *(f"  {fact.label}: {fact.text}" for fact in self.facts())]
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
