"""TrainConfig: the whole truth of a run, flat so that CLI flags and recipe fields map onto it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cnnzoo.errors import CnnzooError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "onecycle")
NORMS = ("torch", "scratch")
INITS = ("default", "xavier", "kaiming")
AUTO_BOOL = ("auto", "on", "off")
# The fast path's pieces, each auto/on/off so it can be measured alone.
SWITCHES = ("compile", "channels_last", "cuda_graphs", "fused_optimizer", "cudnn_benchmark")


@dataclass
class TrainConfig:
    model: str = "lenet5"
    dataset: str = "fashion-mnist"
    model_options: dict[str, Any] = field(default_factory=dict)
    norm: str = "torch"
    init: str = "default"
    input_size: int | None = None  # None: the model's default input from the registry
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    crop_padding: int = 0
    hflip: bool = False
    normalize: bool = True
    normalize_mean: float | None = None  # None: the data set's; set by fine-tuning to what the source expects
    normalize_std: float | None = None
    finetune_from: str | None = None  # "torchvision:resnet18" or a run directory (cnnzoo finetune)
    head_epochs: int = 0  # fine-tuning: epochs training only the new head before all layers
    val_split: float = 0.0
    early_stop: int | None = None  # patience in epochs without validation progress; None: train every epoch
    early_stop_min_delta: float = 0.0  # validation accuracy (a fraction) an epoch must gain to count as progress
    tta: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on the CPU
    compile: str = "auto"  # auto: on for CUDA
    channels_last: str = "auto"
    cuda_graphs: str = "auto"
    fused_optimizer: str = "auto"  # auto: on for CUDA
    cudnn_benchmark: str = "auto"  # auto: on for CUDA (no effect on the CPU)
    sync_bn: bool = False  # with several processes: batch norm over the global batch
    eval_batch_size: int = 1024
    limit_train: int | None = None
    limit_test: int | None = None
    data_dir: str | None = None
    recipe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise CnnzooError(
                f"Unknown config field(s) {', '.join(unknown)}; valid fields are: {', '.join(cls.field_names())}."
            )
        return cls(**values)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> TrainConfig:
        """Raise CnnzooError on the first value no run could use; return self for chaining."""
        positive_ints = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size}
        for name, value in positive_ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CnnzooError(f"--{name.replace('_', '-')} must be a positive whole number, got {value!r}.")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise CnnzooError(f"--lr must be a positive number, got {self.lr!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise CnnzooError(f"Unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}.")
        if self.schedule not in SCHEDULES:
            raise CnnzooError(f"Unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}.")
        if not 0 <= self.momentum < 1:
            raise CnnzooError(f"--momentum must be in [0, 1), got {self.momentum!r}.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise CnnzooError(f"--weight-decay must be zero or a positive number, got {self.weight_decay!r}.")
        if self.norm not in NORMS:
            raise CnnzooError(f"--norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        if self.init not in INITS:
            raise CnnzooError(f"--init must be one of {', '.join(INITS)}, got {self.init!r}.")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise CnnzooError(f"--warmup-epochs must be between 0 and --epochs ({self.epochs}), got {self.warmup_epochs!r}.")
        if not 0 <= self.label_smoothing < 1:
            raise CnnzooError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise CnnzooError(f"--grad-clip must be positive when given, got {self.grad_clip!r}.")
        if self.crop_padding < 0:
            raise CnnzooError(f"--crop-padding must be zero or positive, got {self.crop_padding!r}.")
        if not 0 <= self.val_split < 1:
            raise CnnzooError(f"--val-split must be in [0, 1), got {self.val_split!r}.")
        if self.early_stop is not None:
            if isinstance(self.early_stop, bool) or not isinstance(self.early_stop, int) or self.early_stop < 1:
                raise CnnzooError(f"--early-stop must be a positive whole number of epochs, got {self.early_stop!r}.")
            if not self.val_split:
                raise CnnzooError("--early-stop watches validation accuracy, so it needs --val-split (e.g. --val-split 0.1).")
        if not (math.isfinite(self.early_stop_min_delta) and 0 <= self.early_stop_min_delta < 1):
            raise CnnzooError(f"--early-stop-min-delta must be a fraction in [0, 1), got {self.early_stop_min_delta!r}.")
        if self.early_stop_min_delta and self.early_stop is None:
            raise CnnzooError("--early-stop-min-delta applies only with --early-stop PATIENCE.")
        if self.input_size is not None and self.input_size < 1:
            raise CnnzooError(f"--resize must be a positive image size, got {self.input_size!r}.")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise CnnzooError(f"--precision must be auto, fp32 or bf16, got {self.precision!r}.")
        for name in SWITCHES:
            if getattr(self, name) not in AUTO_BOOL:
                raise CnnzooError(f"--{name.replace('_', '-')} must be one of {', '.join(AUTO_BOOL)}, got {getattr(self, name)!r}.")
        if (self.normalize_mean is None) != (self.normalize_std is None):
            raise CnnzooError("normalize_mean and normalize_std must be given together.")
        if self.normalize_std is not None and not self.normalize_std > 0:
            raise CnnzooError(f"normalize_std must be positive, got {self.normalize_std!r}.")
        if not (isinstance(self.head_epochs, int) and 0 <= self.head_epochs <= self.epochs):
            raise CnnzooError(f"--head-epochs must be a whole number between 0 and --epochs ({self.epochs}), "
                              f"got {self.head_epochs!r}.")
        if self.head_epochs and not self.finetune_from:
            raise CnnzooError("--head-epochs applies only to fine-tuning; use `cnnzoo finetune --from ...`.")
        if self.sync_bn and self.norm != "torch":
            raise CnnzooError("--sync-bn converts torch's batch-norm layers; it cannot sync --norm scratch, use --norm torch.")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CnnzooError(f"--{name.replace('_', '-')} must be a positive number of images, got {value!r}.")
        return self
