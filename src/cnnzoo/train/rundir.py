"""A run directory: the files a run leaves behind, each written atomically, by one writer at a time.

The writer (a training or resuming process) holds an exclusive ``flock`` on the run directory
itself (an open descriptor of the folder) for as long as it writes. The operating system drops the
lock when the process ends in any way, kill -9 included, so a crash can never leave a run locked;
and no file can be deleted from under it (a lock on ``.writer.lock`` once let a second writer in
after someone deleted that file by hand). ``.writer.lock`` only says which process writes, for the
message that refuses a second writer at once. Whoever takes the lock also deletes the temporaries
that killed writers left half-written (a checkpoint's can be 89 MB).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Iterable

from cnnzoo.atomic import atomic_write_text, remove_stale_temporaries
from cnnzoo.errors import CnnzooError
from cnnzoo.train.history import BATCH_COLUMNS, EPOCH_COLUMNS, History

LOCK_NAME = ".writer.lock"
MAX_NAME_BYTES = 255  # a folder name's limit on every common file system


class RunDirBusy(CnnzooError):
    """Another live process is writing this run directory."""


def _csv_text(columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def default_run_name(model: str, dataset: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{dataset}"


def check_run_name(name: str) -> str:
    """A run name is one plain folder name that prints on one line."""
    if (not isinstance(name, str) or not name.strip() or name in (".", "..") or "/" in name or os.sep in name
            or any(not ch.isprintable() for ch in name)):
        raise CnnzooError(f"--name must be a plain folder name (not empty, no '/', no line breaks or control "
                          f"characters, not '.' or '..'), got {name!r}; --out chooses the folder that holds the runs.")
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        raise CnnzooError(f"--name is {len(os.fsencode(name))} bytes long, more than the {MAX_NAME_BYTES} a folder name "
                          "may have; choose a shorter one.")
    return name


class RunDir:
    # Every file a run directory holds is named here and nowhere else; readers (viz, compare, the CLI)
    # go through these names or the paths below.
    CONFIG = "config.json"
    METRICS = "metrics.csv"
    BATCH_LOSS = "batch_loss.csv"
    EVALUATION = "evaluation.json"
    REPORT = "report.html"
    CHECKPOINTS = "checkpoints"
    LAST = "last.safetensors"
    BEST = "best.safetensors"
    EARLY_STOPPING = "early_stopping.json"  # where early stopping stands, rewritten every epoch
    TENSORBOARD = "tensorboard"  # TensorBoardLogger's event files
    MLRUNS = "mlruns"  # MLflowLogger's file store, when no tracking URI is given
    MLFLOW = "mlflow.json"  # the MLflow run this run logs to, so --resume continues it
    # The figures plot_run draws, by what they show.
    PLOTS = {"loss": "loss.png", "accuracy": "accuracy.png", "lr": "lr.png", "confusion": "confusion.png",
             "misclassified": "misclassified.png"}
    EVALUATE_CONFUSION = "confusion-{split}.png"  # `cnnzoo evaluate`'s picture of one split

    @classmethod
    def holding(cls, path: str | Path) -> Path:
        """The run directory `path` names: the folder itself, or the run a checkpoint file lies in (else
        the file's own folder)."""
        path = Path(path)
        if path.is_dir():
            return path
        return path.parent.parent if path.parent.name == cls.CHECKPOINTS else path.parent

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock: int | None = None  # the open descriptor of the folder, flocked

    @classmethod
    def create(cls, out: str | Path, name: str, overwrite: bool = False) -> RunDir:
        """A new, empty run directory, locked for writing by this process (see `writing`)."""
        path = Path(out) / check_run_name(name)
        if path.exists() and not path.is_dir():
            raise CnnzooError(f"{path} exists and is not a folder; pick another --name.")
        run = cls(path)
        if path.exists() and any(p.name != LOCK_NAME for p in path.iterdir()):
            if not overwrite:
                raise CnnzooError(
                    f"Run directory {path} already exists; pick another --name, or pass --resume {path} to "
                    "continue it or --overwrite to replace it."
                )
            if not (path / cls.CONFIG).is_file():
                raise CnnzooError(f"{path} is not a cnnzoo run directory (it has no config.json), so --overwrite "
                                  "will not delete it; pick another --name.")
            run.lock()  # never delete a run another process is still writing
            for entry in path.iterdir():
                if entry.name != LOCK_NAME:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        try:
            (path / cls.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            run.unlock()
            raise CnnzooError(
                f"Cannot write the run directory {path} ({error.strerror}); choose a writable --out folder."
            ) from None
        return run.lock()

    def lock(self) -> RunDir:
        """Become this run directory's only writer, or raise RunDirBusy; idempotent within one RunDir."""
        if self._lock is not None:
            return self
        try:
            folder = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise CnnzooError(f"Cannot open the run directory {self.path} ({error.strerror}); check that it exists "
                              "and its permissions.") from None
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(folder)
            try:
                holder = (self.path / LOCK_NAME).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                holder = ""
            raise RunDirBusy(f"Run directory {self.path} is being written by another cnnzoo process"
                             f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for it to finish or stop it, "
                             "then try again.") from None
        self._lock = folder
        try:
            (self.path / LOCK_NAME).write_text(str(os.getpid()), encoding="utf-8")
        except OSError as error:
            self.unlock()
            raise CnnzooError(f"Cannot write the run directory {self.path} ({error.strerror}); check its "
                              "permissions.") from None
        for folder_path in (self.path, self.checkpoints_dir):
            remove_stale_temporaries(folder_path, sole_writer=True)
        return self

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    @contextlib.contextmanager
    def writing(self) -> Iterator[RunDir]:
        """Hold the writer lock for the body (taking it unless this RunDir already has it)."""
        self.lock()
        try:
            yield self
        finally:
            self.unlock()

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not run.config_path.is_file():
            raise CnnzooError(f"{run.path} is not a cnnzoo run directory (it has no config.json).")
        return run

    config_path = property(lambda self: self.path / self.CONFIG)
    metrics_path = property(lambda self: self.path / self.METRICS)
    batch_loss_path = property(lambda self: self.path / self.BATCH_LOSS)
    evaluation_path = property(lambda self: self.path / self.EVALUATION)
    report_path = property(lambda self: self.path / self.REPORT)
    checkpoints_dir = property(lambda self: self.path / self.CHECKPOINTS)
    last_checkpoint = property(lambda self: self.checkpoints_dir / self.LAST)
    best_checkpoint = property(lambda self: self.checkpoints_dir / self.BEST)
    tensorboard_dir = property(lambda self: self.path / self.TENSORBOARD)
    mlruns_dir = property(lambda self: self.path / self.MLRUNS)

    def plot_path(self, kind: str) -> Path:
        """Where plot_run draws the figure of `kind` (a key of PLOTS)."""
        return self.path / self.PLOTS[kind]

    def evaluate_confusion_path(self, split: str) -> Path:
        return self.path / self.EVALUATE_CONFUSION.format(split=split)

    def checkpoint(self, which: str = "best") -> Path:
        """The `which` ("best" or "last") checkpoint; "best" falls back to last where there is no best yet
        (a run stopped before it finished an epoch)."""
        return self.best_checkpoint if which == "best" and self.best_checkpoint.is_file() else self.last_checkpoint

    def disk_full_note(self, path: str | Path) -> str | None:
        """What a full disk leaves intact besides `path` itself, for `atomic_target`'s `also_intact`:
        a file of this run directory is not its checkpoints, which survive."""
        if Path(path).parent == self.path and self.checkpoints_dir.is_dir():
            return f"and the last checkpoint in {self.CHECKPOINTS}/ is intact"
        return None

    def write_json(self, name: str, values: dict[str, Any]) -> None:
        path = self.path / name
        atomic_write_text(path, json.dumps(values, indent=2, default=str) + "\n", self.disk_full_note(path))

    def read_json(self, name: str) -> Any:
        """A JSON file of the run; unreadable or invalid JSON is a CnnzooError naming the file."""
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CnnzooError(f"Cannot read {path} ({error.strerror}); check that the run directory is complete "
                              "and readable.") from None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            where = f" (line {error.lineno}, column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
            raise CnnzooError(f"{path} is damaged: it is not valid JSON{where}; restore it from a copy or train "
                              "the run again.") from None

    def read_mlflow(self) -> dict[str, str] | None:
        """mlflow.json checked field by field (`cnnzoo.train.schema.check_mlflow_record`), or None where
        the run has not logged to MLflow."""
        from cnnzoo.train.schema import check_mlflow_record

        path = self.path / self.MLFLOW
        return check_mlflow_record(self.read_json(self.MLFLOW), str(path)) if path.is_file() else None

    def read_config(self):
        """config.json checked against the schema: (TrainConfig, every field it holds)."""
        from cnnzoo.train.schema import check_run_config

        return check_run_config(self.read_json(self.CONFIG), str(self.config_path))

    def write_history(self, history: History) -> None:
        atomic_write_text(self.metrics_path, _csv_text(EPOCH_COLUMNS, history.rows()),
                          self.disk_full_note(self.metrics_path))
        atomic_write_text(self.batch_loss_path, _csv_text(BATCH_COLUMNS, history.batch_rows()),
                          self.disk_full_note(self.batch_loss_path))

    def _read_bytes(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as error:
            raise CnnzooError(f"Cannot read {path} ({error.strerror}); check that the run directory is complete "
                              "and readable.") from None

    def read_metrics(self) -> list[dict[str, int | float | None]]:
        """metrics.csv's rows, one per finished epoch, every value checked and converted
        (`cnnzoo.train.schema.check_table`)."""
        from cnnzoo.train.schema import METRICS_COLUMNS, METRICS_OPTIONAL, check_table

        return check_table(self._read_bytes(self.metrics_path), str(self.metrics_path), METRICS_COLUMNS,
                           METRICS_OPTIONAL)

    def read_batch_loss(self) -> list[dict[str, int | float | None]]:
        """batch_loss.csv's rows, one per step, checked as `read_metrics`'s."""
        from cnnzoo.train.schema import BATCH_LOSS_COLUMNS, check_table

        return check_table(self._read_bytes(self.batch_loss_path), str(self.batch_loss_path), BATCH_LOSS_COLUMNS)

    def read_evaluation(self) -> dict[str, Any]:
        """evaluation.json checked field by field (`cnnzoo.train.schema.check_evaluation`)."""
        from cnnzoo.train.schema import check_evaluation

        return check_evaluation(self.read_json(self.EVALUATION), str(self.evaluation_path))
