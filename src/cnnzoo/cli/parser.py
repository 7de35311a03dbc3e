"""The `cnnzoo` command line: every subcommand and flag. The flags that set a TrainConfig field (train,
lr-find, finetune, bench, and compare's run settings) are made from that field's Option
(`add_config_flags`), so none is typed twice.
Building it loads torch (TrainConfig's value lists come from cnnzoo.data) but neither matplotlib nor the
workflows: the commands import those when they run, and `_ChoicesOf` defers the value lists they own."""

from __future__ import annotations

import argparse
import typing

from cnnzoo.cli import commands, runs, zoo
from cnnzoo.data.images import INVERT_CHOICES
from cnnzoo.train.config import FIELD_DEFAULTS, FINETUNE_DEFAULTS, NORMS, OPTIONS, SWITCHES, TrainConfig

RECIPE = "from the recipe"  # in help texts: the value comes from the recipe when one is used
DEFAULTS = TrainConfig()  # what a run without a recipe uses, quoted in the help texts
FINETUNE = DEFAULTS.replace(**FINETUNE_DEFAULTS)  # what `cnnzoo finetune` uses for a flag left unset
BENCH = DEFAULTS.replace(epochs=2)  # `cnnzoo bench` times one warm-up epoch and one steady one unless told


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected C×H×W such as 1x28x28, got {text!r}")
    return values


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


class _ChoicesOf:
    """An allowed-value list owned by a module the command line should not import at start-up (viz
    loads matplotlib): argparse reads choices to check a value or print help, so import then. The
    argument needs a metavar: without one, add_argument iterates the choices to format the usage."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _values(self) -> tuple[str, ...]:
        from importlib import import_module

        return getattr(import_module(self.module), self.name)

    def __iter__(self):
        return iter(self._values())

    def __contains__(self, value) -> bool:
        return value in self._values()


def _add_run_flags(g, default_name: str) -> None:
    """Where a command that trains writes its run directory and how much it says while training."""
    g.add_argument("--out", default="runs", help="parent folder of run directories (default: ./runs)")
    g.add_argument("--name", help=f"run name (default: {default_name})")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing run of the same name (default: refuse)")
    g.add_argument("--quiet", action="store_true", help="no progress output (default: progress and one line per epoch)")


def _add_logger_flags(g) -> None:
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard (default: off)")
    g.add_argument("--mlflow", action="store_true",
                   help="also log to MLflow: $MLFLOW_TRACKING_URI, else a file store in RUN_DIR/mlruns (default: off)")


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return format(value, "g") if isinstance(value, float) else str(value)


_KINDS = {name: next((kind for kind in (bool, int, float) if kind in typing.get_args(hint) or hint is kind), str)
          for name, hint in typing.get_type_hints(TrainConfig).items()}


def add_config_flags(group, names, *, recipe: bool = True, defaults: TrainConfig = DEFAULTS,
                     shown: dict[str, str] | None = None) -> None:
    """TrainConfig's fields `names` as flags, each made from its field's Option. A flag left unset stays
    None, so the recipe (with `recipe`) or the command's `defaults` decide; the help says which."""
    for name in names:
        option, value = OPTIONS[name], getattr(defaults, name)
        text = (shown or {}).get(name) or (option.shown if value == FIELD_DEFAULTS[name] and option.shown
                                           else _shown(value))
        source = f"{RECIPE}, else {text}" if recipe and option.from_recipe else text
        kwargs = {"help": f"{option.help} (default: {source})".replace("%", "%%"), "dest": name}
        if _KINDS[name] is bool:
            kwargs.update(action=argparse.BooleanOptionalAction, default=None)
        else:
            kwargs.update(type=_KINDS[name], choices=option.choices, metavar=option.metavar)
        group.add_argument(option.flag_name(name), **kwargs)


def _device_flag(g, default: str = "auto") -> None:
    """--device of the commands that use a trained model, the data or the machine, with TrainConfig's values."""
    g.add_argument("--device", default=default, help=f"{OPTIONS['device'].help} (default: {default})")


def _data_dir_flag(g, of_run: bool = False, what: str = "data root") -> None:
    """--data-dir with TrainConfig's default in words; `of_run`: a run's own data root comes first."""
    first = "the run's, else " if of_run else ""
    g.add_argument("--data-dir", help=f"{what} (default: {first}{OPTIONS['data_dir'].shown})")


def _invert_flag(g, what: str) -> None:
    g.add_argument("--invert", choices=INVERT_CHOICES, default="auto",
                   help=f"invert {what} to white-on-black like the data (default auto: when the background is light)")


def _option_flag(g) -> None:
    g.add_argument("--option", action="append", type=_option, metavar="KEY=VALUE",
                   help="model option such as activation=relu, repeatable (default: none)")


# `cnnzoo train --help`'s sections, in order: every TrainConfig field whose Option names one is a flag.
TRAIN_GROUPS = ("what to train", "optimization", "data", "execution")
LR_FIND_FLAGS = ("optimizer", "batch_size", "momentum", "weight_decay", "label_smoothing", "limit_train", "seed",
                 "data_dir", "device")
FINETUNE_FLAGS = ("dataset", "epochs", "head_epochs", "input_size", "batch_size", "lr", "momentum", "weight_decay",
                  "warmup_epochs", "label_smoothing", "val_split", "crop_padding", "seed", "eval_batch_size",
                  "limit_train", "limit_test", "optimizer", "schedule", "hflip", "data_dir", "device", "precision",
                  "compile", "early_stop", "early_stop_min_delta")


def _train_group(title: str) -> list[str]:
    return [name for name, option in OPTIONS.items() if option.group == title]


def _add_lr_find_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="learning-rate range test: sweep the lr, plot the loss, suggest a value",
                       description="Train a copy of the model for a few hundred steps while the learning rate grows "
                                   "exponentially, plot loss against lr and print the rate where the loss falls "
                                   "fastest. Nothing is written but the plot. Unset flags come from the recipe "
                                   "<model>-<dataset> when one ships.")
    g = p.add_argument_group("what to sweep")
    add_config_flags(g, _train_group("what to train"))
    _option_flag(g)
    add_config_flags(p, LR_FIND_FLAGS)
    p.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate of the sweep (default: 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last learning rate of the sweep (default: 10)")
    p.add_argument("--steps", type=int, default=200, help="training steps in the sweep (default: 200)")
    p.add_argument("-o", "--output", help="plot file, .png/.svg/.pdf (default: lr-find-<model>-<dataset>.png)")
    p.set_defaults(func=commands.cmd_lr_find)


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag; unset flags keep the recipe's (or the default) value."""
    for title in TRAIN_GROUPS:
        g = p.add_argument_group(title)
        add_config_flags(g, _train_group(title))
        if title == "what to train":
            _option_flag(g)


TRAIN_EXAMPLES = """examples:
  cnnzoo train --model lenet5 --dataset fashion-mnist
      the course's LeNet-5 with its recipe's tuned settings (about 3 minutes on 2 CPU cores)
  cnnzoo train --recipe resnet18-fashion-mnist --epochs 5 --val-split 0.1 --dry-run
      see what a shortened recipe run would use (settings, device, fast path), then drop --dry-run
  cnnzoo train --resume runs/20250101-120000-lenet5-fashion-mnist --epochs 30
      continue a finished or interrupted run up to 30 epochs
"""


def build_parser() -> argparse.ArgumentParser:
    from cnnzoo import __version__

    parser = argparse.ArgumentParser(prog="cnnzoo", description="Build, train, inspect and compare classic CNNs.")
    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list every model with its input, classes, parameters and mult-adds")
    p.set_defaults(func=zoo.cmd_models)

    p = sub.add_parser("summary", help="Keras-like layer table of a model")
    p.add_argument("model")
    p.add_argument("--input", type=_shape, metavar="C×H×W", help="input shape (default: the model's)")
    p.add_argument("--classes", type=int, help="number of classes (default: the model's)")
    p.add_argument("--norm", choices=NORMS, default="torch",
                   help="batch-norm implementation for BN models (default: torch)")
    _option_flag(p)
    p.set_defaults(func=zoo.cmd_summary)

    p = sub.add_parser("train", help="train a model; writes a run directory", epilog=TRAIN_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_flags(p)
    g = p.add_argument_group("run directory")
    _add_run_flags(g, "<time>-<model>-<dataset>")
    g.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its last completed epoch (default: a new run)")
    g.add_argument("--dry-run", action="store_true",
                   help="print the resolved settings, device and fast path, then exit without reading data or "
                        "writing anything")
    _add_logger_flags(g)
    g = p.add_argument_group("several processes (see also: torchrun --nproc_per_node N -m cnnzoo train ...)")
    g.add_argument("--nproc", type=int, metavar="N",
                   help="train data-parallel on N processes of this machine (one per GPU) via torchrun; "
                        "--batch-size stays the global batch (default: this one process)")
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a trained model")
    p.add_argument("run", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split to measure (default: test)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average with horizontally flipped images (default: as the run was evaluated)")
    _device_flag(p)
    _data_dir_flag(p, of_run=True)
    p.add_argument("-o", "--out", help="confusion-matrix PNG (default: beside the run)")
    p.set_defaults(func=runs.cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a trained model")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image (default: 3)")
    _invert_flag(p, "the images")
    _device_flag(p)
    p.set_defaults(func=runs.cmd_predict)

    p = sub.add_parser("draw", help="architecture diagram (layered boxes or a graph) as PNG/SVG")
    p.add_argument("model")
    p.add_argument("--style", choices=_ChoicesOf("cnnzoo.viz.diagrams", "STYLES"), metavar="STYLE",
                   default="layered", help="layered: boxes sized by the tensors, as the course "
                   "draws them; graph: every layer as a node; visualkeras: the Keras twin drawn by visualkeras, PNG "
                   "only, needs cnnzoo[keras] (default: layered)")
    p.add_argument("--input", type=_shape, metavar="C×H×W", help="input shape (default: the model's)")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.svg (required)")
    p.set_defaults(func=zoo.cmd_draw)

    p = sub.add_parser("show", help="a grid of data-set images with their class names, as PNG")
    p.add_argument("dataset")
    p.add_argument("--split", choices=("train", "test"), default="test", help="which split (default: test)")
    p.add_argument("--n", type=int, default=32, help="number of images (default: 32)")
    p.add_argument("--random", action="store_true", help="a random sample instead of the first images")
    p.add_argument("--seed", type=int, help="seed of the random sample; implies --random (default: 0)")
    p.add_argument("--per-class", type=int, metavar="K",
                   help="K images of every class, a row per class, instead of --n (default: off)")
    _data_dir_flag(p)
    p.add_argument("-o", "--output", help="PNG file (default: DATASET-SPLIT.png)")
    p.set_defaults(func=zoo.cmd_show)

    p = sub.add_parser("report", help="one self-contained HTML report of a run")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("-o", "--output", help="HTML file (default: RUN_DIR/report.html)")
    p.set_defaults(func=runs.cmd_report)

    p = sub.add_parser("inspect", help="what a trained model computes for some images: feature maps, filters, "
                                       "Grad-CAM and saliency, as one PNG (needs cnnzoo[inspect])")
    p.add_argument("run", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files, framed as `cnnzoo predict` frames them")
    p.add_argument("--test-index", type=int, nargs="+", default=[], metavar="N",
                   help="test-set images by index (default: none; give files, indices or both)")
    p.add_argument("--layer", help="the layer whose feature maps are drawn, named as `cnnzoo summary` names it "
                                   "(default: the first convolution)")
    p.add_argument("--target", help="the class (name or index) Grad-CAM and saliency explain (default: the predicted one)")
    _invert_flag(p, "image files")
    _device_flag(p, "cpu")
    p.add_argument("-o", "--output", required=True, help="FILE.png, .svg or .pdf (required)")
    p.set_defaults(func=runs.cmd_inspect)

    p = sub.add_parser("serve", help="a local web page to draw, upload or pick an image and see what a trained "
                                     "model makes of it (needs cnnzoo[serve])")
    p.add_argument("run", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--port", type=int, default=7860, help="TCP port; 0 picks a free one (default: 7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    _device_flag(p, "cpu")
    p.set_defaults(func=runs.cmd_serve)

    p = sub.add_parser("bench", help="seconds per epoch, images/s, TFLOP/s and memory (optionally vs the course loop)")
    add_config_flags(p, ("model", "dataset", "batch_size", "epochs", "limit_train", "data_dir", "device", "precision",
                         *SWITCHES, "norm"), recipe=False, defaults=BENCH, shown={
        "model": "lenet5, about a minute on 2 CPU cores; AlexNet at 224 px takes hours on a CPU",
        "batch_size": "the course's, 256 for LeNet and 128 otherwise",
        "dataset": BENCH.dataset, "epochs": f"{BENCH.epochs}: the first is warm-up, the rest steady state"})
    p.add_argument("--baseline", action="store_true", help="also time the course's DataLoader loop")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(model=BENCH.model, dataset=BENCH.dataset, epochs=BENCH.epochs, func=commands.cmd_bench)

    p = sub.add_parser("recipes", help="list the shipped recipes with their expected accuracy and time")
    p.set_defaults(func=commands.cmd_recipes)

    p = sub.add_parser("compare", help="train recipes over seeds (or read runs) into a leaderboard and a plot")
    p.add_argument("--recipes", metavar="NAME,NAME,...",
                   help="recipe names, see `cnnzoo recipes` (default: none; this or --runs)")
    p.add_argument("--runs", nargs="+", metavar="DIR",
                   help="finished run directories or folders of them, instead of --recipes (default: none)")
    p.add_argument("--seeds", type=int, help="seeds per recipe: the recipe's seed + 0, 1, ... (default 3)")
    add_config_flags(p, ("epochs", "limit_train", "limit_test", "device", "data_dir"), recipe=False,
                     shown={"epochs": "each recipe's"})  # the same for every run
    p.add_argument("--out", default="runs", help="parent of the compare-<time> folder (default: ./runs)")
    p.set_defaults(func=commands.cmd_compare)

    _add_lr_find_parser(sub)

    p = sub.add_parser("finetune", help="fine-tune a pretrained model (torchvision or a run); writes a run directory")
    p.add_argument("--from", dest="finetune_from", required=True, metavar="torchvision:resnet18|RUN_DIR",
                   help="the pretrained source: torchvision's ImageNet ResNet-18 or a cnnzoo run/checkpoint (required)")
    p.add_argument("--weights", metavar="PATH",
                   help="torchvision state_dict saved with torch.save (default: torchvision's download)")
    p.add_argument("--keep-head", action="store_true", help="keep the source's classifier instead of a new one")
    # Every value flag is left None when unset, so finetune_config applies FINETUNE_DEFAULTS; the help
    # texts quote the same values from FINETUNE.
    add_config_flags(p, FINETUNE_FLAGS, recipe=False, defaults=FINETUNE, shown={"input_size": "the source's",
                                                                                  "dataset": FINETUNE.dataset})
    _add_run_flags(p, "<time>-<model>-finetuned-<dataset>")
    _add_logger_flags(p)
    p.set_defaults(func=commands.cmd_finetune)

    p = sub.add_parser("export", help="export a trained model to ONNX or TorchScript (preprocessing included) or Keras")
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--format", choices=_ChoicesOf("cnnzoo.workflows.export", "FORMATS"), metavar="FORMAT",
                   default="onnx", help="onnx or torchscript, preprocessing included; keras: the Keras twin (.keras, "
                   "needs cnnzoo[keras]), which takes preprocessed channels-last images (default: onnx)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the model (required)")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare with PyTorch on real test images (default: on)")
    _data_dir_flag(p, of_run=True, what="data root for the check")
    p.set_defaults(func=runs.cmd_export)

    p = sub.add_parser("doctor", help="versions, devices, data root and which data sets are present")
    _data_dir_flag(p, what="data root to check")
    p.set_defaults(func=zoo.cmd_doctor)
    return parser
