"""A run directory: the files a run leaves behind, each written atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from cnnzoo.atomic import atomic_write_text
from cnnzoo.errors import CnnzooError
from cnnzoo.train.history import BATCH_COLUMNS, EPOCH_COLUMNS, History


def _csv_text(columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def default_run_name(model: str, dataset: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{dataset}"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, out: str | Path, name: str, overwrite: bool = False) -> RunDir:
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise CnnzooError(f"--name must be a plain folder name (no '/', not '.' or '..'), got {name!r}; "
                              "--out chooses the folder that holds the runs.")
        path = Path(out) / name
        if path.exists() and not path.is_dir():
            raise CnnzooError(f"{path} exists and is not a folder; pick another --name.")
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise CnnzooError(
                    f"Run directory {path} already exists; pick another --name, or pass --resume {path} to "
                    "continue it or --overwrite to replace it."
                )
            if not (path / "config.json").is_file():
                raise CnnzooError(f"{path} is not a cnnzoo run directory (it has no config.json), so --overwrite "
                                  "will not delete it; pick another --name.")
            shutil.rmtree(path)
        try:
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise CnnzooError(
                f"Cannot write the run directory {path} ({error.strerror}); choose a writable --out folder."
            ) from None
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not (run.path / "config.json").is_file():
            raise CnnzooError(f"{run.path} is not a cnnzoo run directory (it has no config.json).")
        return run

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.csv")
    batch_loss_path = property(lambda self: self.path / "batch_loss.csv")
    evaluation_path = property(lambda self: self.path / "evaluation.json")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.safetensors")
    best_checkpoint = property(lambda self: self.path / "checkpoints" / "best.safetensors")

    def write_json(self, name: str, values: dict[str, Any]) -> None:
        atomic_write_text(self.path / name, json.dumps(values, indent=2, default=str) + "\n")

    def read_json(self, name: str) -> dict[str, Any]:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def write_history(self, history: History) -> None:
        atomic_write_text(self.metrics_path, _csv_text(EPOCH_COLUMNS, history.rows()))
        atomic_write_text(self.batch_loss_path, _csv_text(BATCH_COLUMNS, history.batch_rows()))

    def read_metrics(self) -> list[dict[str, str]]:
        with open(self.metrics_path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
