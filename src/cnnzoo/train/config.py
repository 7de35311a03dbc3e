"""TrainConfig: the whole truth of a run, flat so that CLI flags and recipe fields map onto it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cnnzoo.data.splits import VAL_HOLDOUTS
from cnnzoo.data.transforms import RESIZE_MODES
from cnnzoo.errors import CnnzooError
from cnnzoo.models.init import INITS
from cnnzoo.nn import NORMS

# Each list of allowed values has one owner, the lowest layer that needs it: init schemes, norms,
# validation holdouts and resize modes the layers that apply them (imported above), the training
# choices here. `validate` and the CLI's choices read these, so a new value is added in one place.
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "rmsprop_keras")
SCHEDULES = ("constant", "cosine", "onecycle")
AUTO_BOOL = ("auto", "on", "off")
# auto: what the device runs best (train/runtime.py): bf16 autocast on CUDA compute capability >= 8.0,
# fp16 autocast with a gradient scaler on 7.0-7.5, fp32 below, on Apple MPS and on the CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MAX_LR = 3.4e38  # float32's largest finite value, rounded down
# The fast path's pieces, each auto/on/off so it can be measured alone.
SWITCHES = ("compile", "channels_last", "cuda_graphs", "fused_optimizer", "cudnn_benchmark")
# What "training accuracy" means: "running", the train-mode accuracy of the epoch's batches as
# they were trained (cnnzoo's and Keras'); "eval", the course's, the whole training set
# evaluated in eval mode after the epoch, inside the epoch's time.
TRAIN_ACC = ("running", "eval")
# What a fine-tuning run (cnnzoo.workflows.finetune, `cnnzoo finetune`) changes in TrainConfig's
# defaults: a pretrained body wants a short run at a small rate, the new head trained alone first.
# Kept here, beside the fields it sets, so the command line can quote them without importing torch.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "epochs": 3, "head_epochs": 1, "batch_size": 128, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
    "weight_decay": 1e-4, "schedule": "cosine",
}


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
    momentum: float | None = None  # None: 0.9 for SGD, 0 for RMSprop (torch's and Keras' default)
    nesterov: bool = False
    weight_decay: float = 0.0
    # RMSprop's decay of the squared-gradient average (torch's alpha, Keras' rho) and the
    # optimizers' epsilon; None takes the chosen optimizer's own default (see train.optim).
    rho: float | None = None
    eps: float | None = None
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    crop_padding: int = 0
    hflip: bool = False
    random_erasing: float = 0.0  # probability of erasing a random box of a training image (0: off)
    normalize: bool = True
    normalize_mean: float | None = None  # None: the data set's; set by fine-tuning to what the source expects
    normalize_std: float | None = None
    finetune_from: str | None = None  # "torchvision:resnet18" or a run directory (cnnzoo finetune)
    head_epochs: int = 0  # fine-tuning: epochs training only the new head before all layers
    val_split: float = 0.0
    # Reproducing the course material (its recipes set these; cnnzoo's own keep the defaults):
    val_holdout: str = "random"  # "last": Keras' validation_split, the last val_split of train, unshuffled
    resize_mode: str = "tensor"  # "pil": Pillow's uint8 resize, as the course's Resize on PIL images
    train_acc: str = "running"  # see TRAIN_ACC
    early_stop: int | None = None  # patience in epochs without validation progress; None: train every epoch
    early_stop_min_delta: float = 0.0  # validation accuracy (a fraction) an epoch must gain to count as progress
    tta: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # see PRECISIONS
    compile: str = "auto"  # auto: on for CUDA compute capability >= 7.0 (Triton's)
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
            # The upper bound is what torch's int32 sizes and counters hold; nothing real comes near it.
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**31:
                raise CnnzooError(f"--{name.replace('_', '-')} must be a positive whole number below 2**31, "
                                  f"got {value!r}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise CnnzooError(f"--seed must be a whole number in [0, 2**63), got {self.seed!r}.")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            # Optimizers apply the rate in float32: a larger one is not a rate but an overflow.
            raise CnnzooError(f"--lr must be a positive number of at most {MAX_LR:.1e}, got {self.lr!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise CnnzooError(f"Unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}.")
        if self.schedule not in SCHEDULES:
            raise CnnzooError(f"Unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}.")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise CnnzooError(f"--momentum must be in [0, 1), got {self.momentum!r}.")
        if self.rho is not None and not 0 <= self.rho < 1:
            raise CnnzooError(f"--rho must be in [0, 1), got {self.rho!r}.")
        if self.rho is not None and not self.optimizer.startswith("rmsprop"):
            raise CnnzooError(f"--rho applies to RMSprop only; drop it or use --optimizer rmsprop (got {self.optimizer}).")
        if self.eps is not None and not (math.isfinite(self.eps) and self.eps > 0):
            raise CnnzooError(f"--eps must be a positive number, got {self.eps!r}.")
        if self.eps is not None and self.optimizer == "sgd":
            raise CnnzooError("--eps has no effect on SGD; drop it or pick adam, adamw, rmsprop or rmsprop_keras.")
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
        if self.grad_clip is not None and not math.isfinite(self.grad_clip):
            # Infinity clips nothing, and config.json and the checkpoint's metadata cannot hold it.
            raise CnnzooError(f"--grad-clip must be a finite number, got {self.grad_clip!r}; leave it out to clip nothing.")
        if self.crop_padding < 0:
            raise CnnzooError(f"--crop-padding must be zero or positive, got {self.crop_padding!r}.")
        if not (isinstance(self.random_erasing, (int, float)) and not isinstance(self.random_erasing, bool)
                and 0 <= self.random_erasing <= 1):
            raise CnnzooError(f"--random-erasing must be a probability in [0, 1] (0.5 as Zhong et al.), "
                              f"got {self.random_erasing!r}.")
        if not 0 <= self.val_split < 1:
            raise CnnzooError(f"--val-split must be in [0, 1), got {self.val_split!r}.")
        for name, allowed in (("val_holdout", VAL_HOLDOUTS), ("resize_mode", RESIZE_MODES), ("train_acc", TRAIN_ACC)):
            if getattr(self, name) not in allowed:
                raise CnnzooError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}.")
        from cnnzoo.models.shapes import MAX_INPUT_SIDE

        if self.input_size is not None and not 1 <= self.input_size <= MAX_INPUT_SIDE:
            raise CnnzooError(f"--resize must be a positive image size of at most {MAX_INPUT_SIDE} pixels, "
                              f"got {self.input_size!r}.")
        if self.early_stop is not None:
            if isinstance(self.early_stop, bool) or not isinstance(self.early_stop, int) or self.early_stop < 1:
                raise CnnzooError(f"--early-stop must be a positive whole number of epochs, got {self.early_stop!r}.")
            if not self.val_split:
                raise CnnzooError("--early-stop watches validation accuracy, so it needs --val-split (e.g. --val-split 0.1).")
        if not (math.isfinite(self.early_stop_min_delta) and 0 <= self.early_stop_min_delta < 1):
            raise CnnzooError(f"--early-stop-min-delta must be a fraction in [0, 1), got {self.early_stop_min_delta!r}.")
        if self.early_stop_min_delta and self.early_stop is None:
            raise CnnzooError("--early-stop-min-delta applies only with --early-stop PATIENCE.")
        if self.precision not in PRECISIONS:
            raise CnnzooError(f"--precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, got {self.precision!r}.")
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


def model_from_config(config: TrainConfig, num_classes: int):
    """The untrained nn.Module `config` describes, for `num_classes` classes: the one place that maps a
    config's model fields (model, input size, norm, init, options) onto build_model."""
    from cnnzoo.models import build_model  # lazily: the config (and the CLI's --help) stays torch-free

    return build_model(config.model, num_classes=num_classes, in_channels=1, input_size=config.input_size,
                       norm=config.norm, init=config.init, **config.model_options)
