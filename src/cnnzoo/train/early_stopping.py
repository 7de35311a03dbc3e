"""Early stopping on validation accuracy, with the best epoch's weights put back at the end.

Two numbers are tracked, as in Lightning's EarlyStopping beside its ModelCheckpoint:
- patience: an epoch counts as progress only when its validation accuracy beats the best that
  counted so far by more than `min_delta`; after `patience` epochs without progress training stops.
- the best epoch: the one with the highest validation accuracy (the earliest of equals), the same
  epoch `checkpoints/best.safetensors` holds. Its weights are what the model ends with, so the
  run's evaluation, predictions and exports all describe one epoch.

The state is a pure function of the history's epoch rows, so a resumed run recomputes it from the
checkpoint's history and carries on with the same patience count; `early_stopping.json` in the
run directory says where things stand after every epoch and how the run ended.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from cnnzoo.errors import CnnzooError
from cnnzoo.train.callbacks import Callback, FitState
from cnnzoo.train.checkpoint import load_checkpoint
from cnnzoo.train.config import check_setting


@dataclass
class EarlyStopStatus:
    patience: int
    min_delta: float = 0.0
    best_epoch: int | None = None  # 1-based, as in metrics.csv
    best_val_acc: float | None = None
    reference: float | None = None  # the validation accuracy the next epoch must beat by more than min_delta
    epochs_without_progress: int = 0
    stopped_epoch: int | None = None  # the epoch training stopped after, when it stopped early
    weights_epoch: int | None = None  # whose weights the model ended with (set when training ends)

    def update(self, row: dict[str, Any]) -> bool:
        """Take one epoch's metrics row; True when training should stop after this epoch."""
        score = row["val_acc"]
        if self.best_val_acc is None or score > self.best_val_acc:
            self.best_epoch, self.best_val_acc = row["epoch"], score
        if self.reference is None or score > self.reference + self.min_delta:
            self.reference, self.epochs_without_progress = score, 0
        else:
            self.epochs_without_progress += 1
        if self.epochs_without_progress >= self.patience:
            self.stopped_epoch = row["epoch"]
        return self.stopped_epoch is not None

    @classmethod
    def replay(cls, rows: Iterable[dict[str, Any]], patience: int, min_delta: float = 0.0) -> EarlyStopStatus:
        """The status after the epochs in `rows` (a history's `epochs`), as training reached it."""
        status = cls(patience=patience, min_delta=min_delta)
        for row in rows:
            if row.get("val_acc") is None or status.update(row):
                break
        return status

    def to_dict(self) -> dict[str, Any]:
        return {"monitor": "val_acc", **asdict(self)}


class EarlyStopping(Callback):
    """Stop once validation accuracy has not improved by more than `min_delta` for `patience`
    epochs, and end with the best epoch's weights (`restore_best`). Needs a validation split."""

    def __init__(self, patience: int, min_delta: float = 0.0, restore_best: bool = True, verbose: bool = True):
        # The settings' own rules (TrainConfig's Options), so a callback built by hand takes what a run takes.
        self.patience = check_setting("early_stop", patience)
        self.min_delta = float(check_setting("early_stop_min_delta", min_delta))
        self.restore_best, self.verbose = restore_best, verbose
        self.status = EarlyStopStatus(patience, self.min_delta)
        self.best_weights: dict | None = None

    def on_fit_start(self, state: FitState) -> None:
        self.status = EarlyStopStatus.replay(state.history.epochs, self.patience, self.min_delta)
        if self.status.stopped_epoch is not None:
            raise CnnzooError(
                f"This run already stopped early after epoch {self.status.stopped_epoch} (no validation progress "
                f"for {self.patience} epochs; best epoch {self.status.best_epoch}), so there is nothing to resume."
            )
        self.best_weights = None
        best_file = state.run_dir.best_checkpoint if state.run_dir is not None else None
        if self.restore_best and self.status.best_epoch is not None and best_file is not None and best_file.is_file():
            self.best_weights = load_checkpoint(best_file).model_state  # the best epoch came before this resume

    def on_epoch_end(self, state: FitState) -> None:
        row = state.row
        if row.get("val_acc") is None:
            raise CnnzooError("Early stopping watches validation accuracy, so it needs held-out data: pass "
                              "--val-split (e.g. --val-split 0.1).")
        stop = self.status.update(row)
        if self.restore_best and self.status.best_epoch == row["epoch"]:
            self.best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        self._record(state)
        if stop:
            state.stop_training = True
            state.stop_reason = (
                f"early stopping: validation accuracy has not improved by more than {self.min_delta:g} for "
                f"{self.patience} epochs; stopped after epoch {row['epoch']}, best epoch {self.status.best_epoch} "
                f"(val {100 * self.status.best_val_acc:.2f}%)"
            )
            self._say(state, state.stop_reason)

    def on_fit_end(self, state: FitState) -> None:
        # on_fit_end runs in fit's `finally`: after an error or an interrupt the model is left as the
        # last epoch made it, which is what a resume continues from.
        if sys.exc_info()[0] is not None or self.status.best_epoch is None:
            return
        last_epoch = state.history.epochs[-1]["epoch"]
        if self.status.stopped_epoch is None and last_epoch < state.config.epochs:
            return  # another callback ended this fit early (fine-tuning's head phase): training goes on
        self.status.weights_epoch = last_epoch
        if self.restore_best and self.status.best_epoch != last_epoch:
            if self.best_weights is None:
                self._say(state, f"the best epoch's weights are not at hand (no run directory to read them from), "
                                 f"so the model keeps epoch {last_epoch}'s")
            else:
                state.model.load_state_dict(self.best_weights)
                self.status.weights_epoch = self.status.best_epoch
                self._say(state, f"restored the weights of epoch {self.status.best_epoch}, the best on validation data")
        self._record(state)

    def _record(self, state: FitState) -> None:
        if state.run_dir is not None:
            state.run_dir.write_json(state.run_dir.EARLY_STOPPING, self.status.to_dict())

    def _say(self, state: FitState, message: str) -> None:
        if self.verbose and state.is_main:
            print(message, flush=True)
