"""What a run measured: loss per batch, and one row of metrics per epoch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cnnzoo import display

EPOCH_COLUMNS = ("epoch", "train_loss", "train_acc", "val_acc", "test_acc", "lr", "time_s", "images_per_s",
                 "train_images", "val_images", "test_images")
IMAGE_COUNT_COLUMNS = ("train_images", "val_images", "test_images")  # what each accuracy was measured on
BATCH_COLUMNS = ("step", "epoch", "loss", "lr")


def steps_per_epoch(batch_epochs: Iterable[int]) -> int | None:
    """Batches in a full epoch from each batch's epoch number: the most common count, the first
    epoch's on a tie (a stopped run's last epoch may be shorter); None without batches."""
    counts = Counter(batch_epochs).most_common(1)
    return counts[0][1] if counts else None


@dataclass
class History:
    batch_loss: list[float] = field(default_factory=list)
    batch_lr: list[float] = field(default_factory=list)
    batch_epoch: list[int] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    compile_s: float = 0.0
    compile_mode: str | None = None  # "cuda-graph" (the step captured whole), "default" (compiled), None (eager)
    # Fast-path pieces turned off during the run: {"piece", "epoch", "where", "error"} (cnnzoo.train.fastpath).
    fallbacks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_loss": self.batch_loss, "batch_lr": self.batch_lr, "batch_epoch": self.batch_epoch,
            "epochs": self.epochs, "compile_s": self.compile_s, "compile_mode": self.compile_mode,
            "fallbacks": self.fallbacks,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> History:
        return cls(**values)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per epoch with the columns of metrics.csv."""
        return [{column: row.get(column) for column in EPOCH_COLUMNS} for row in self.epochs]

    def batch_rows(self) -> list[dict[str, Any]]:
        return [
            {"step": step, "epoch": epoch, "loss": loss, "lr": lr}
            for step, (epoch, loss, lr) in enumerate(zip(self.batch_epoch, self.batch_loss, self.batch_lr))
        ]

    def to_dataframe(self):
        """Per-epoch metrics as a pandas DataFrame (needs pandas, which cnnzoo itself does not)."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=list(EPOCH_COLUMNS))

    @property
    def final(self) -> dict[str, Any]:
        return self.rows()[-1] if self.epochs else {}

    @property
    def steps_per_epoch(self) -> int | None:
        return steps_per_epoch(self.batch_epoch)

    def plot(self):
        """The course's two plots in one figure: loss per batch and train/val/test accuracy per epoch.

        A notebook shows the returned Figure once, as a cell's last line; `fig.savefig(path)` writes it."""
        return display.provider("history_figure")(self)

    # A notebook shows a History as its curves and epoch table. One bundle renders the figure once
    # for both the PNG and the HTML, which IPython would otherwise draw twice.
    def _repr_mimebundle_(self, include=None, exclude=None):
        return display.provider("history_bundle")(self)

    def _repr_html_(self) -> str:
        return self._repr_mimebundle_()["text/html"]

    def _repr_png_(self) -> bytes | None:
        return self._repr_mimebundle_().get("image/png")

    def __str__(self) -> str:
        if not self.epochs:
            return repr(self)
        return display.provider("history_text")(self.rows())

    def __repr__(self) -> str:
        final = self.final
        if not final:
            return "History(empty)"
        return f"History({len(self.epochs)} epochs, final train_acc={final['train_acc']:.4f}, test_acc={final['test_acc']})"
