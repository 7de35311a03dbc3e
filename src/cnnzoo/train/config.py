"""TrainConfig: the whole truth of a run, flat so that CLI flags and recipe fields map onto it.

Each field carries its own `Option` (help, choices, rule, flag): the command line's flags, `validate`,
the stored-document check and `--dry-run` are all read from it, so adding a setting is one edit here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnzoo.data.catalog import DATASETS
from cnnzoo.data.splits import VAL_HOLDOUTS
from cnnzoo.data.transforms import RESIZE_MODES
from cnnzoo.errors import CnnzooError
from cnnzoo.models.init import INITS
from cnnzoo.models.shapes import MAX_INPUT_SIDE
from cnnzoo.nn import NORMS
from cnnzoo.values import is_number, is_whole

# Each list of allowed values has one owner, the lowest layer that needs it: init schemes, norms,
# validation holdouts and resize modes the layers that apply them (imported above), the training
# choices here. The fields' Options name these lists, so a new value is added in one place.
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "rmsprop_keras")
# What an unset (None) momentum, rho or eps means for each optimizer (train/optim.py applies them):
# torch's own defaults, except SGD's momentum (cnnzoo's recipes start from 0.9) and Keras' for its RMSprop.
DEFAULT_MOMENTUM = {"sgd": 0.9, "rmsprop": 0.0, "rmsprop_keras": 0.0}
DEFAULT_RHO = {"rmsprop": 0.99, "rmsprop_keras": 0.9}
DEFAULT_EPS = {"adam": 1e-8, "adamw": 1e-8, "rmsprop": 1e-8, "rmsprop_keras": 1e-7}
SCHEDULES = ("constant", "cosine", "onecycle")
AUTO_BOOL = ("auto", "on", "off")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MAX_LR = 3.4e38  # float32's largest finite value, rounded down
# What "training accuracy" means: "running", the train-mode accuracy of the epoch's batches as
# they were trained (cnnzoo's and Keras'); "eval", the course's, the whole training set
# evaluated in eval mode after the epoch, inside the epoch's time.
TRAIN_ACC = ("running", "eval")
# What a fine-tuning run (cnnzoo.workflows.finetune, `cnnzoo finetune`) changes in TrainConfig's
# defaults: a pretrained body wants a short run at a small rate, the new head trained alone first.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "epochs": 3, "head_epochs": 1, "batch_size": 128, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
    "weight_decay": 1e-4, "schedule": "cosine",
}


@dataclass(frozen=True)
class FastPathPiece:
    """One piece of the fast path: its own auto/on/off setting (except precision, which has values),
    measured alone by bench, and turned off by the fallback when it fails on a user's machine."""

    name: str  # the TrainConfig field, the flag (--name) and the Runtime field it decides
    label: str  # how a fallback message names it
    help: str  # the flag's help: what it is
    auto: str  # what auto chooses (train/runtime.py decides)
    off: dict[str, Any]  # the Runtime fields the fallback sets when it turns the piece off, its own first

    def is_on(self, runtime: Any) -> bool:
        """Whether `runtime` asks for this piece: its own field (off's first) is not at its off value."""
        own, off_value = next(iter(self.off.items()))
        return getattr(runtime, own) != off_value


# Above this size the kernels, not their launches, dominate: a captured graph only costs memory.
CUDA_GRAPHS_MAX_PARAMS = 5_000_000
# In the order the fallback turns them off: the riskiest and least essential first; autocast
# changes the numbers most, so it goes only after the two compilers.
FAST_PATH = (
    FastPathPiece("cuda_graphs", "the captured step (CUDA graph)",
                  f"the whole compiled step captured as one CUDA graph, for models under "
                  f"{CUDA_GRAPHS_MAX_PARAMS / 1e6:g}M parameters", "on where the step is compiled, except with fp16",
                  {"cuda_graphs": False}),
    FastPathPiece("compile", "torch.compile", "torch.compile",
                  "on for CUDA compute capability >= 7.0, which Triton needs; eager on older cards, MPS and the CPU",
                  {"compile": False, "cuda_graphs": False}),
    FastPathPiece("precision", "autocast", "autocast precision; fp32, bf16 and fp16 force one, bf16 below 8.0 "
                  "runs emulated (slow) and says so",
                  "by device: CUDA compute capability >= 8.0 (A100, L4, H100/H200, Blackwell): bf16 autocast | "
                  "7.0-7.5 (V100, Colab's T4): fp16 autocast with a gradient scaler | below 7.0 (P100, GTX 10xx): "
                  "fp32 | Apple MPS: fp32 | CPU: fp32", {"amp_dtype": None}),
    FastPathPiece("channels_last", "channels_last", "NHWC memory format",
                  "CUDA, and CPU models without batch norm", {"channels_last": False}),
    FastPathPiece("fused_optimizer", "the fused optimizer", "one fused kernel per optimizer step", "on for CUDA",
                  {"fused_optimizer": False}),
    FastPathPiece("cudnn_benchmark", "cudnn.benchmark", "cuDNN's per-shape algorithm search", "on for CUDA",
                  {"cudnn_benchmark": False}),
)
FAST_PATH_PIECES = {piece.name: piece for piece in FAST_PATH}
# The pieces that are plain switches, each auto/on/off so it can be measured alone.
SWITCHES = tuple(piece.name for piece in FAST_PATH if piece.name != "precision")
# No piece at all: the plain fp32 eager loop the course material runs (a recipe's `fast_path = false`).
NO_FAST_PATH = {"precision": "fp32", **dict.fromkeys(SWITCHES, "off")}


@dataclass(frozen=True)
class Option:
    """How one TrainConfig field is set and checked: its flag's help, choices and rule."""

    help: str  # what the setting does; the flag's help adds where its default comes from
    group: str  # the `cnnzoo train --help` section it is listed in
    choices: tuple[str, ...] | None = None
    rule: Callable[[Any], bool] | None = None  # True for a value a run can use
    must: str = ""  # the rule in words, refusals read "--flag must be <must>, got <value>."
    flag: str | None = None  # when it is not --field-name
    metavar: str | None = None
    shown: str | None = None  # the default in words, where the value alone would say too little
    from_recipe: bool = True  # a recipe may set it: the help says "from the recipe, else ..."
    setup: bool = True  # False: how or where a run executes, not what it learns (compare groups by it)

    def flag_name(self, name: str) -> str:
        return self.flag or "--" + name.replace("_", "-")


def _option(default: Any = None, **option: Any) -> Any:
    return field(default=default, metadata={"option": Option(**option)})


def _switch(piece: str) -> Any:
    fast = FAST_PATH_PIECES[piece]
    return _option("auto", help=fast.help, group="execution", choices=PRECISIONS if piece == "precision" else AUTO_BOOL,
                   shown=f"auto: {fast.auto}", from_recipe=False, setup=False)


def _number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def _count(value: Any) -> bool:
    # The upper bound is what torch's int32 sizes and counters hold; nothing real comes near it.
    return is_whole(value) and 1 <= value < 2**31


def _fraction(value: Any) -> bool:
    return _number(value) and 0 <= value < 1


def _per_optimizer(defaults: dict[str, float]) -> str:
    """'1e-8 for adam, adamw and rmsprop; 1e-7 for rmsprop_keras': the defaults in words, for the help."""
    by_value: dict[float, list[str]] = {}
    for name, value in defaults.items():
        by_value.setdefault(value, []).append(name)
    listed = {value: names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
              for value, names in by_value.items()}
    return "; ".join(f"{value:g}".replace("e-0", "e-") + f" for {names}" for value, names in listed.items())


COUNT = "a positive whole number below 2**31"
FRACTION = "in [0, 1)"


@dataclass
class TrainConfig:
    model: str = _option("lenet5", help="model name, see `cnnzoo models`", group="what to train",
                         shown="lenet5, or the recipe's", from_recipe=False)
    dataset: str = _option("fashion-mnist", help=" or ".join(DATASETS), group="what to train",
                           shown="fashion-mnist, or the recipe's", from_recipe=False)
    model_options: dict[str, Any] = field(default_factory=dict)  # the flag --option KEY=VALUE, repeatable
    norm: str = _option("torch", help="batch-norm implementation for BN models", group="what to train",
                        choices=NORMS)
    init: str = _option("default", help="weight initialization: xavier = the course's (weights only, torch's "
                        "biases), keras = Glorot weights and zero biases", group="what to train", choices=INITS,
                        shown="torch's own")
    input_size: int | None = _option(help="square input size in pixels", group="what to train", flag="--resize",
                                     metavar="PX", rule=lambda v: is_whole(v) and 1 <= v <= MAX_INPUT_SIDE,
                                     must=f"a positive image size of at most {MAX_INPUT_SIDE} pixels",
                                     shown="the model's, e.g. 224 for AlexNet")
    epochs: int = _option(10, help="passes over the training set (fine-tuning: the head-only ones included)",
                          group="optimization", rule=_count, must=COUNT)
    batch_size: int = _option(256, help="images per optimizer step, all processes together", group="optimization",
                              rule=_count, must=COUNT)
    optimizer: str = _option("sgd", help="rmsprop_keras: Keras' RMSprop rule, eps inside the square root",
                             group="optimization", choices=OPTIMIZERS)
    # Optimizers apply the rate in float32: a larger one is not a rate but an overflow.
    lr: float = _option(0.1, help="peak learning rate", group="optimization",
                        rule=lambda v: _number(v) and 0 < v <= MAX_LR, must=f"a positive number of at most {MAX_LR:.1e}")
    momentum: float | None = _option(help="SGD/RMSprop momentum", group="optimization", rule=_fraction, must=FRACTION,
                                     shown=_per_optimizer(DEFAULT_MOMENTUM))
    nesterov: bool = _option(False, help="Nesterov momentum for SGD", group="optimization")
    weight_decay: float = _option(0.0, help="L2 / decoupled weight decay", group="optimization",
                                  rule=lambda v: _number(v) and v >= 0, must="zero or a positive number")
    # RMSprop's decay of the squared-gradient average (torch's alpha, Keras' rho) and the
    # optimizers' epsilon; None takes the chosen optimizer's own default (DEFAULT_RHO, DEFAULT_EPS above).
    rho: float | None = _option(help="RMSprop's squared-gradient decay, torch's alpha", group="optimization",
                                rule=_fraction, must=FRACTION, shown=_per_optimizer(DEFAULT_RHO))
    eps: float | None = _option(help="optimizer epsilon for Adam/AdamW/RMSprop", group="optimization",
                                rule=lambda v: _number(v) and v > 0, must="a positive number",
                                shown=_per_optimizer(DEFAULT_EPS))
    schedule: str = _option("constant", help="learning-rate schedule over the run", group="optimization",
                            choices=SCHEDULES)
    warmup_epochs: float = _option(0.0, help="linear warm-up length, may be fractional", group="optimization",
                                   rule=lambda v: _number(v) and v >= 0, must="zero or a positive number of epochs")
    label_smoothing: float = _option(0.0, help="cross-entropy label smoothing", group="optimization",
                                     rule=_fraction, must=FRACTION)
    # Infinity clips nothing, and config.json and the checkpoint's metadata cannot hold it.
    grad_clip: float | None = _option(help="clip the gradient norm", group="optimization", metavar="NORM",
                                      rule=lambda v: _number(v) and v > 0,
                                      must="a finite positive number (leave it out to clip nothing)",
                                      shown="no clipping")
    crop_padding: int = _option(0, help="random-crop augmentation padding in pixels", group="data",
                                rule=lambda v: is_whole(v) and 0 <= v <= MAX_INPUT_SIDE,
                                must=f"a whole number of pixels from 0 to {MAX_INPUT_SIDE}")
    hflip: bool = _option(False, help="random horizontal flips", group="data")
    random_erasing: float = _option(0.0, help="erase a random box (2-40% of the image, random pixel values) of "
                                    "each training image with probability P, e.g. 0.5; 0 is off", group="data",
                                    metavar="P", rule=lambda v: _number(v) and 0 <= v <= 1,
                                    must="a probability in [0, 1] (0.5 as Zhong et al.)")
    normalize: bool = _option(True, help="mean/std normalization of the inputs", group="data")
    # Set by fine-tuning to what the source expects; None: the data set's own statistics.
    normalize_mean: float | None = None
    normalize_std: float | None = None
    finetune_from: str | None = None  # "torchvision:resnet18" or a run directory (the flag --from of finetune)
    head_epochs: int = _option(0, help="epochs training only the new head first", group="fine-tuning",
                               rule=lambda v: is_whole(v) and v >= 0, must="a whole number of epochs")
    val_split: float = _option(0.0, help="fraction of train held out for validation, e.g. 0.2", group="data",
                               rule=_fraction, must=FRACTION)
    # Reproducing the course material (its recipes set these; cnnzoo's own keep the defaults):
    val_holdout: str = _option("random", help="which images --val-split holds out: random (seeded), or last, as "
                               "Keras' validation_split", group="data", choices=VAL_HOLDOUTS)
    resize_mode: str = _option("tensor", help="how --resize scales: tensor (float bilinear on the device) or pil "
                               "(Pillow's uint8 resize, as the course)", group="data", choices=RESIZE_MODES)
    train_acc: str = _option("running", help="training accuracy reported: running (train mode, during the epoch) or "
                             "eval (the course's: whole training set re-evaluated in eval mode, inside the epoch's "
                             "time)", group="execution", choices=TRAIN_ACC)
    early_stop: int | None = _option(help="stop after PATIENCE epochs without validation progress and keep the best "
                                     "epoch's weights (needs --val-split)", group="data", metavar="PATIENCE",
                                     rule=lambda v: is_whole(v) and v >= 1, must="a positive whole number of epochs",
                                     shown="off")
    early_stop_min_delta: float = _option(0.0, help="validation accuracy an epoch must gain to count as progress, "
                                          "e.g. 0.002", group="data", metavar="FRACTION", rule=_fraction,
                                          must="a fraction in [0, 1)")
    tta: bool = _option(False, help="test-time augmentation with mirrored images", group="data")
    seed: int = _option(0, help="seed of weights, shuffling and augmentation", group="execution",
                        rule=lambda v: is_whole(v) and 0 <= v < 2**63, must="a whole number in [0, 2**63)", setup=False)
    device: str = _option("auto", help="auto, cpu, cuda, cuda:N or mps", group="execution", from_recipe=False,
                          shown="auto, the NVIDIA GPU when there is one, else a Mac's MPS GPU, else the CPU",
                          setup=False)
    precision: str = _switch("precision")
    compile: str = _switch("compile")
    channels_last: str = _switch("channels_last")
    cuda_graphs: str = _switch("cuda_graphs")
    fused_optimizer: str = _switch("fused_optimizer")
    cudnn_benchmark: str = _switch("cudnn_benchmark")
    sync_bn: bool = _option(False, help="with several processes, batch norm over the global batch; needs --norm "
                            "torch", group="execution", from_recipe=False)
    eval_batch_size: int = _option(1024, help="images per evaluation batch", group="execution", rule=_count,
                                   must=COUNT, from_recipe=False, setup=False)
    limit_train: int | None = _option(help="train on a seeded subset of N images", group="data", metavar="N",
                                      rule=lambda v: is_whole(v) and v >= 1, must="a positive number of images",
                                      shown="all", from_recipe=False)
    limit_test: int | None = _option(help="evaluate on a seeded subset of N test images", group="data", metavar="N",
                                     rule=lambda v: is_whole(v) and v >= 1, must="a positive number of images",
                                     shown="all", from_recipe=False)
    data_dir: str | None = _option(help="data root", group="data", shown="$CNNZOO_DATA, else ~/.cache/cnnzoo",
                                   from_recipe=False, setup=False)
    recipe: str | None = _option(help="start from a shipped recipe, see `cnnzoo recipes`", group="what to train",
                                 shown="MODEL-DATASET when it ships, else fallback settings", from_recipe=False,
                                 setup=False)

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
        """Raise CnnzooError on the first value no run could use; return self for chaining. Each field
        is checked against its Option; then the rules that tie fields together."""
        for name in OPTIONS:
            value = getattr(self, name)
            if value is None and FIELD_DEFAULTS[name] is None:
                continue  # None: the documented default (the optimizer's own, the model's size, off)
            check_setting(name, value)
        if self.rho is not None and not self.optimizer.startswith("rmsprop"):
            raise CnnzooError(f"--rho applies to RMSprop only; drop it or use --optimizer rmsprop (got {self.optimizer}).")
        if self.eps is not None and self.optimizer == "sgd":
            raise CnnzooError("--eps has no effect on SGD; drop it or pick adam, adamw, rmsprop or rmsprop_keras.")
        if self.warmup_epochs > self.epochs:
            raise CnnzooError(f"--warmup-epochs must be between 0 and --epochs ({self.epochs}), got {self.warmup_epochs!r}.")
        if self.early_stop is not None and not self.val_split:
            raise CnnzooError("--early-stop watches validation accuracy, so it needs --val-split (e.g. --val-split 0.1).")
        if self.early_stop_min_delta and self.early_stop is None:
            raise CnnzooError("--early-stop-min-delta applies only with --early-stop PATIENCE.")
        if (self.normalize_mean is None) != (self.normalize_std is None):
            raise CnnzooError("normalize_mean and normalize_std must be given together.")
        if self.normalize_std is not None and not (_number(self.normalize_std) and self.normalize_std > 0):
            raise CnnzooError(f"normalize_std must be positive, got {self.normalize_std!r}.")
        if self.normalize_mean is not None and not _number(self.normalize_mean):
            raise CnnzooError(f"normalize_mean must be a finite number, got {self.normalize_mean!r}.")
        if self.head_epochs > self.epochs:
            raise CnnzooError(f"--head-epochs must be a whole number between 0 and --epochs ({self.epochs}), "
                              f"got {self.head_epochs!r}.")
        if self.head_epochs and not self.finetune_from:
            raise CnnzooError("--head-epochs applies only to fine-tuning; use `cnnzoo finetune --from ...`.")
        if self.sync_bn and self.norm != "torch":
            raise CnnzooError("--sync-bn converts torch's batch-norm layers; it cannot sync --norm scratch, use --norm torch.")
        return self


def check_setting(name: str, value: Any) -> Any:
    """`value` for the field `name` checked against its Option alone (`validate` adds the fields whose
    None means a default, and the rules that tie fields together); a refusal names its flag."""
    option = OPTIONS[name]
    if option.choices is not None and value not in option.choices:
        raise CnnzooError(f"{option.flag_name(name)} must be one of {', '.join(option.choices)}, got {value!r}.")
    if option.rule is not None and not option.rule(value):
        raise CnnzooError(f"{option.flag_name(name)} must be {option.must}, got {value!r}.")
    if isinstance(FIELD_DEFAULTS[name], bool) and not isinstance(value, bool):
        raise CnnzooError(f"{option.flag_name(name)} must be true or false, got {value!r}.")
    return value


# Every field's Option and default, in declaration order: what the command line and `validate` read.
OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in dataclasses.fields(TrainConfig)
                              if "option" in f.metadata}
FIELD_DEFAULTS: dict[str, Any] = dataclasses.asdict(TrainConfig())
# How or where a run executes, not what it trained: runs that differ only in these are repetitions of one setup.
EXECUTION_FIELDS = tuple(name for name, option in OPTIONS.items() if not option.setup)


def model_from_config(config: TrainConfig, num_classes: int):
    """The untrained nn.Module `config` describes, for `num_classes` classes: the one place that maps a
    config's model fields (model, input size, norm, init, options) onto build_model."""
    from cnnzoo.models import build_model  # lazily: cnnzoo.models imports every architecture

    return build_model(config.model, num_classes=num_classes, in_channels=1, input_size=config.input_size,
                       norm=config.norm, init=config.init, **config.model_options)
