"""A synthetic run directory shaped like the trainer's, pointing at the real test split; and what the
diagram tests (test_diagram*.py) share: a small residual model and checks of a drawn picture."""

import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Annotation
from PIL import Image
from torch import nn

FINAL_TEST_ACC = "0.91234"  # more digits than the page shows: data-value must keep them all
HOSTILE = '<script>document.title="pwned"</script> & "quotes"'


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("CNNZOO_DATA")
    if not root or not Path(root).is_dir():
        pytest.fail("CNNZOO_DATA must point at the Fashion-MNIST/MNIST data (e.g. shared/data); these tests need the real split.")
    return Path(root)


@pytest.fixture(scope="session")
def test_split(data_root):
    from cnnzoo.data import load_split

    return load_split("fashion-mnist", "test", root=data_root)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def make_run(run: Path, test_split, data_root: Path, evaluation: bool = True, model: str = "lenet5") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    classes = list(test_split.classes)
    (run / "config.json").write_text(json.dumps({
        "model": model, "dataset": "fashion-mnist", "model_options": {}, "norm": "torch", "init": "default",
        "input_size": None, "epochs": 3, "batch_size": 256, "lr": 0.9, "data_dir": str(data_root),
        "recipe": HOSTILE, "input_shape": [1, 28, 28], "classes": classes, "num_params": 61706,
        "versions": {"torch": "2.14.1", "cnnzoo": "0.1.0"}, "created": "2025-01-01T00:00:00+0000",
    }, indent=2))
    epochs = [("1", "1.20", "0.55", "0.7012"), ("2", "0.61", "0.78", "0.8455"), ("3", "0.40", "0.86", FINAL_TEST_ACC)]
    _write_csv(run / "metrics.csv", ["epoch", "train_loss", "train_acc", "val_acc", "test_acc", "lr", "time_s", "images_per_s"],
               [{"epoch": e, "train_loss": l, "train_acc": a, "val_acc": "", "test_acc": t, "lr": "0.9",
                 "time_s": "2.4", "images_per_s": "25000"} for e, l, a, t in epochs])
    steps_per_epoch = 40
    _write_csv(run / "batch_loss.csv", ["step", "epoch", "loss", "lr"],
               [{"step": s, "epoch": s // steps_per_epoch + 1, "loss": f"{2.3 * math.exp(-s / 40) + 0.3 + 0.1 * math.sin(s):.4f}",
                 "lr": f"{0.9 * (1 + math.cos(math.pi * s / 120)) / 2 + 1e-3:.5f}"} for s in range(3 * steps_per_epoch)])
    if evaluation:
        labels = test_split.labels[:200].tolist()
        wrong = [{"index": i, "true": y, "pred": (y + 3) % 10, "confidence": 0.99 - 0.02 * k}
                 for k, (i, y) in enumerate(list(enumerate(labels))[:20])]
        confusion = [[90 if i == j else 1 for j in range(10)] for i in range(10)]
        (run / "evaluation.json").write_text(json.dumps({
            "split": "test", "accuracy": 0.91234, "loss": 0.25, "classes": classes,
            "per_class_accuracy": [90 / 99] * 10, "confusion": confusion, "misclassified": wrong,
        }))
    return run


@pytest.fixture
def new_run(tmp_path, test_split, data_root):
    """``new_run(name, evaluation=True, model="lenet5")`` makes another run directory in tmp_path."""
    return lambda name, **kwargs: make_run(tmp_path / name, test_split, data_root, **kwargs)


@pytest.fixture
def run_dir(new_run) -> Path:
    return new_run("run")


def assert_sensible_png(path):
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        w, h = image.size
    assert 200 <= w <= 6000 and 200 <= h <= 6000, (path.name, w, h)


def skip_arrows(fig) -> int:
    from cnnzoo.viz.diagram_trace import SKIP_COLOR

    ax = fig.axes[0]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    arrows += [t.arrow_patch for t in ax.texts if isinstance(t, Annotation) and t.arrow_patch is not None]
    return sum(1 for a in arrows if a.get_edgecolor()[:3] == pytest.approx(tuple(int(SKIP_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5))))


class TinyResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 3))

    def forward(self, x):
        x = self.bn(self.stem(x))
        return self.head(torch.relu(x + self.body(x)))
