"""The `cnnzoo` command line: every subcommand and flag. The training flags' choices are TrainConfig's
value lists and their fallbacks its defaults, read from cnnzoo.train.config, so that neither is typed twice."""

from __future__ import annotations

import argparse

from cnnzoo.cli import commands, runs, zoo
from cnnzoo.train.config import (
    AUTO_BOOL,
    FINETUNE_DEFAULTS,
    INITS,
    NORMS,
    OPTIMIZERS,
    PRECISIONS,
    RESIZE_MODES,
    SCHEDULES,
    SWITCHES,
    TRAIN_ACC,
    VAL_HOLDOUTS,
    TrainConfig,
)

RECIPE = "from the recipe"  # in help texts: the value comes from the recipe when one is used
DEFAULTS = TrainConfig()  # what a run without a recipe uses, quoted in the help texts
FINETUNE = DEFAULTS.replace(**FINETUNE_DEFAULTS)  # what `cnnzoo finetune` uses for a flag left unset


def _on_off(value: bool) -> str:
    return "on" if value else "off"


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
    loads matplotlib): argparse only reads choices to check a value or print help, so import then."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _values(self) -> tuple[str, ...]:
        from importlib import import_module

        return getattr(import_module(self.module), self.name)

    def __iter__(self):
        return iter(self._values())

    def __contains__(self, value) -> bool:
        return value in self._values()


def _add_early_stop_flags(g) -> None:
    g.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without validation progress and keep the best epoch's weights "
                        "(needs --val-split; default: off)")
    g.add_argument("--early-stop-min-delta", type=float, metavar="FRACTION",
                   help="validation accuracy an epoch must gain to count as progress, e.g. 0.002 (default: 0)")


def _add_logger_flags(g) -> None:
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard (default: off)")
    g.add_argument("--mlflow", action="store_true",
                   help="also log to MLflow: $MLFLOW_TRACKING_URI, else a file store in RUN_DIR/mlruns (default: off)")


def _add_lr_find_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="learning-rate range test: sweep the lr, plot the loss, suggest a value",
                       description="Train a copy of the model for a few hundred steps while the learning rate grows "
                                   "exponentially, plot loss against lr and print the rate where the loss falls "
                                   "fastest. Nothing is written but the plot. Unset flags come from the recipe "
                                   "<model>-<dataset> when one ships.")
    _add_model_flags(p.add_argument_group("what to sweep"))
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="default: from the recipe")
    p.add_argument("--batch-size", type=int, help="default: from the recipe")
    p.add_argument("--momentum", type=float, help="SGD momentum (default: from the recipe)")
    p.add_argument("--weight-decay", type=float, help="default: from the recipe")
    p.add_argument("--label-smoothing", type=float, help="default: from the recipe")
    p.add_argument("--limit-train", type=int, metavar="N", help="sweep on a seeded subset of N training images (default: all)")
    p.add_argument("--seed", type=int, help="default: from the recipe")
    p.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else a per-user cache)")
    p.add_argument("--device", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate of the sweep (default: 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last learning rate of the sweep (default: 10)")
    p.add_argument("--steps", type=int, default=200, help="training steps in the sweep (default: 200)")
    p.add_argument("-o", "--output", help="plot file, .png/.svg/.pdf (default: lr-find-<model>-<dataset>.png)")
    p.set_defaults(func=commands.cmd_lr_find)


def _add_model_flags(g) -> None:
    """The flags that choose the model, its data and its recipe (train and lr-find share them)."""
    g.add_argument("--model", help="model name, see `cnnzoo models` (default: lenet5, or the recipe's)")
    g.add_argument("--dataset", help="fashion-mnist or mnist (default: fashion-mnist, or the recipe's)")
    g.add_argument("--recipe", help="start from a shipped recipe, see `cnnzoo recipes` (default: MODEL-DATASET "
                   "when it ships, else fallback settings)")
    g.add_argument("--option", action="append", type=_option, metavar="KEY=VALUE",
                   help="model option such as activation=relu, repeatable (default: none)")
    g.add_argument("--norm", choices=NORMS,
                   help="batch-norm implementation for BN models (default: torch)")
    g.add_argument("--init", choices=INITS,
                   help="weight initialization: xavier = the course's (weights only, torch's biases), keras = Glorot "
                        "weights and zero biases (default: from the recipe, else torch's own)")
    g.add_argument("--resize", dest="input_size", type=int, metavar="PX",
                   help="square input size in pixels (default: the model's, e.g. 224 for AlexNet)")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag; unset flags keep the recipe's (or the default) value."""
    _add_model_flags(p.add_argument_group("what to train"))
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, help=f"passes over the training set (default: {RECIPE}, else {DEFAULTS.epochs})")
    g.add_argument("--batch-size", type=int,
                   help=f"images per optimizer step, all processes together (default: {RECIPE}, else {DEFAULTS.batch_size})")
    g.add_argument("--lr", type=float, help=f"peak learning rate (default: {RECIPE}, else {DEFAULTS.lr})")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="rmsprop_keras: Keras' RMSprop rule, eps inside the square root (default: from the recipe, "
                        f"else {DEFAULTS.optimizer})")
    g.add_argument("--momentum", type=float, help="SGD/RMSprop momentum (default: from the recipe, else 0.9 for SGD, "
                                                   "0 for RMSprop)")
    g.add_argument("--rho", type=float, help="RMSprop's squared-gradient decay, torch's alpha (default: from the "
                                             "recipe, else 0.99 for rmsprop, 0.9 for rmsprop_keras)")
    g.add_argument("--eps", type=float, help="optimizer epsilon for Adam/AdamW/RMSprop (default: from the recipe, else "
                                             "1e-8, 1e-7 for rmsprop_keras)")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help=f"Nesterov momentum for SGD (default: {RECIPE}, else {_on_off(DEFAULTS.nesterov)})")
    g.add_argument("--weight-decay", type=float, help=f"L2 / decoupled weight decay (default: {RECIPE}, else {DEFAULTS.weight_decay:g})")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help=f"learning-rate schedule over the run (default: {RECIPE}, else {DEFAULTS.schedule})")
    g.add_argument("--warmup-epochs", type=float,
                   help=f"linear warm-up length, may be fractional (default: {RECIPE}, else {DEFAULTS.warmup_epochs:g})")
    g.add_argument("--label-smoothing", type=float, help=f"cross-entropy label smoothing (default: {RECIPE}, else {DEFAULTS.label_smoothing:g})")
    g.add_argument("--grad-clip", type=float, metavar="NORM",
                   help=f"clip the gradient norm (default: {RECIPE}, else no clipping)")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    g.add_argument("--val-split", type=float,
                   help=f"fraction of train held out for validation, e.g. 0.2 (default: {RECIPE}, else {DEFAULTS.val_split:g})")
    _add_early_stop_flags(g)
    g.add_argument("--val-holdout", choices=VAL_HOLDOUTS,
                   help="which images --val-split holds out: random (seeded), or last, as Keras' validation_split "
                        f"(default: {RECIPE}, else {DEFAULTS.val_holdout})")
    g.add_argument("--resize-mode", choices=RESIZE_MODES,
                   help="how --resize scales: tensor (float bilinear on the device) or pil (Pillow's uint8 resize, "
                        f"as the course) (default: {RECIPE}, else {DEFAULTS.resize_mode})")
    g.add_argument("--crop-padding", type=int,
                   help=f"random-crop augmentation padding in pixels (default: {RECIPE}, else {DEFAULTS.crop_padding})")
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help=f"random horizontal flips (default: {RECIPE}, else {_on_off(DEFAULTS.hflip)})")
    g.add_argument("--random-erasing", type=float, metavar="P",
                   help="erase a random box (2-40%% of the image, random pixel values) of each training image with "
                        f"probability P, e.g. 0.5; 0 is off (default: {RECIPE}, else {DEFAULTS.random_erasing})")
    g.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help=f"mean/std normalization of the inputs (default: {RECIPE}, else {_on_off(DEFAULTS.normalize)})")
    g.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help=f"test-time augmentation with mirrored images (default: {RECIPE}, else {_on_off(DEFAULTS.tta)})")
    g.add_argument("--limit-train", type=int, metavar="N", help="train on a seeded subset of N images (default: all)")
    g.add_argument("--limit-test", type=int, metavar="N",
                   help="evaluate on a seeded subset of N test images (default: all)")
    g = p.add_argument_group("execution")
    g.add_argument("--seed", type=int, help=f"seed of weights, shuffling and augmentation (default: {RECIPE}, else {DEFAULTS.seed})")
    g.add_argument("--train-acc", choices=TRAIN_ACC,
                   help="training accuracy reported: running (train mode, during the epoch) or eval (the course's: "
                        "whole training set re-evaluated in eval mode, inside the epoch's time) (default: from the "
                        f"recipe, else {DEFAULTS.train_acc})")
    _add_execution_switches(g)
    g.add_argument("--eval-batch-size", type=int, help=f"images per evaluation batch (default: {DEFAULTS.eval_batch_size})")
    g.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="with several processes, batch norm over the global batch; needs --norm torch (default: off)")


# The fast path's pieces (TrainConfig's SWITCHES), each auto/on/off so it can be measured alone.
FAST_PATH_HELP = {
    "compile": "torch.compile (default auto: on for CUDA compute capability >= 7.0, which Triton needs; "
               "eager on older cards, MPS and the CPU)",
    "channels_last": "NHWC memory format (default auto: CUDA, and CPU models without batch norm)",
    "cuda_graphs": "CUDA graphs through torch.compile for models under 5M parameters (default auto: on)",
    "fused_optimizer": "one fused kernel per optimizer step (default auto: on for CUDA)",
    "cudnn_benchmark": "cuDNN's per-shape algorithm search (default auto: on for CUDA)",
}


# What --precision auto picks, by device (train/runtime.py decides; `cnnzoo doctor` says it for this machine).
PRECISION_HELP = ("default auto, by device: CUDA compute capability >= 8.0 (A100, L4, H100/H200, Blackwell): bf16 "
                  "autocast | 7.0-7.5 (V100, Colab's T4): fp16 autocast with a gradient scaler | below 7.0 (P100, "
                  "GTX 10xx): fp32 | Apple MPS: fp32 | CPU: fp32. fp32, bf16 and fp16 force one; bf16 below 8.0 "
                  "runs emulated (slow) and says so")


def _add_execution_switches(group) -> None:
    group.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto, the NVIDIA GPU when there is "
                                        "one, else a Mac's MPS GPU, else the CPU)")
    group.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    for switch in SWITCHES:
        group.add_argument(f"--{switch.replace('_', '-')}", choices=AUTO_BOOL, help=FAST_PATH_HELP[switch])


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
    p.add_argument("--option", action="append", type=_option, metavar="KEY=VALUE",
                   help="model option such as activation=relu, repeatable (default: none)")
    p.set_defaults(func=zoo.cmd_summary)

    p = sub.add_parser("train", help="train a model; writes a run directory", epilog=TRAIN_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_flags(p)
    g = p.add_argument_group("run directory")
    g.add_argument("--out", default="runs", help="parent folder of run directories (default: ./runs)")
    g.add_argument("--name", help="run name (default: <time>-<model>-<dataset>)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing run of the same name (default: refuse)")
    g.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its last completed epoch (default: a new run)")
    g.add_argument("--quiet", action="store_true", help="no progress output (default: progress and one line per epoch)")
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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--data-dir", help="data root (default: the run's, else $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    p.add_argument("-o", "--out", help="confusion-matrix PNG (default: beside the run)")
    p.set_defaults(func=runs.cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a trained model")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image (default: 3)")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert to white-on-black like the data (default auto: when the background is light)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    p.set_defaults(func=runs.cmd_predict)

    p = sub.add_parser("draw", help="architecture diagram (layered boxes or a graph) as PNG/SVG")
    p.add_argument("model")
    p.add_argument("--style", choices=_ChoicesOf("cnnzoo.viz.diagrams", "STYLES"), default="layered",
                   help="layered: boxes sized by the tensors, as the course draws them; graph: every layer as a node; "
                        "visualkeras: the Keras twin drawn by visualkeras, PNG only, needs cnnzoo[keras] "
                        "(default: layered)")
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
    p.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
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
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert image files to white-on-black like the data (default auto: when the background is light)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
    p.add_argument("-o", "--output", required=True, help="FILE.png, .svg or .pdf (required)")
    p.set_defaults(func=runs.cmd_inspect)

    p = sub.add_parser("serve", help="a local web page to draw, upload or pick an image and see what a trained "
                                     "model makes of it (needs cnnzoo[serve])")
    p.add_argument("run", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--port", type=int, default=7860, help="TCP port; 0 picks a free one (default: 7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
    p.set_defaults(func=runs.cmd_serve)

    p = sub.add_parser("bench", help="seconds per epoch, images/s, TFLOP/s and memory (optionally vs the course loop)")
    p.add_argument("--model", default="lenet5", help="model to time, see `cnnzoo models` (default: lenet5, about "
                   "a minute on 2 CPU cores; AlexNet at 224 px takes hours on a CPU)")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist or mnist (default: fashion-mnist)")
    p.add_argument("--batch-size", type=int, help="default: the course's (256 for LeNet, 128 otherwise)")
    p.add_argument("--epochs", type=int, default=2,
                   help="the first epoch is warm-up, the rest steady state (default: 2)")
    p.add_argument("--baseline", action="store_true", help="also time the course's DataLoader loop")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--limit-train", type=int, metavar="N",
                   help="time on a seeded subset of N training images (default: all)")
    p.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    _add_execution_switches(p)
    p.add_argument("--norm", choices=NORMS,
                   help="batch-norm implementation for BN models (default: torch)")
    p.set_defaults(func=commands.cmd_bench)

    p = sub.add_parser("recipes", help="list the shipped recipes with their expected accuracy and time")
    p.set_defaults(func=commands.cmd_recipes)

    p = sub.add_parser("compare", help="train recipes over seeds (or read runs) into a leaderboard and a plot")
    p.add_argument("--recipes", metavar="NAME,NAME,...",
                   help="recipe names, see `cnnzoo recipes` (default: none; this or --runs)")
    p.add_argument("--runs", nargs="+", metavar="DIR",
                   help="finished run directories or folders of them, instead of --recipes (default: none)")
    p.add_argument("--seeds", type=int, help="seeds per recipe: the recipe's seed + 0, 1, ... (default 3)")
    p.add_argument("--epochs", type=int, help="epochs of every run (default: each recipe's)")
    p.add_argument("--limit-train", type=int, metavar="N", help="train on a seeded subset of N images (default: all)")
    p.add_argument("--limit-test", type=int, metavar="N", help="evaluate on a seeded subset of N images (default: all)")
    p.add_argument("--device", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
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
    p.add_argument("--dataset", help=f"fashion-mnist or mnist (default: {FINETUNE.dataset})")
    p.add_argument("--epochs", type=int, help=f"all epochs, the head-only ones included (default: {FINETUNE.epochs})")
    p.add_argument("--head-epochs", type=int,
                   help=f"epochs training only the new head first (default: {FINETUNE.head_epochs})")
    p.add_argument("--resize", dest="input_size", type=int, metavar="PX", help="input size (default: the source's)")
    for flag, kind, text in (("--batch-size", int, "images per step"),
                             ("--lr", float, "peak learning rate"),
                             ("--momentum", float, "SGD momentum"),
                             ("--weight-decay", float, "weight decay"),
                             ("--warmup-epochs", float, "linear warm-up length"),
                             ("--label-smoothing", float, "cross-entropy label smoothing"),
                             ("--val-split", float, "fraction of train held out for validation"),
                             ("--crop-padding", int, "random-crop padding in pixels"),
                             ("--seed", int, "seed of the new head, shuffling and augmentation"),
                             ("--eval-batch-size", int, "images per evaluation batch")):
        p.add_argument(flag, type=kind, help=f"{text} (default: {getattr(FINETUNE, flag[2:].replace('-', '_')):g})")
    p.add_argument("--limit-train", type=int, metavar="N", help="train on a seeded subset of N images (default: all)")
    p.add_argument("--limit-test", type=int, metavar="N", help="evaluate on a seeded subset of N images (default: all)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimizer (default: {FINETUNE.optimizer})")
    p.add_argument("--schedule", choices=SCHEDULES, help=f"learning-rate schedule (default: {FINETUNE.schedule})")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help=f"random horizontal flips (default: {_on_off(FINETUNE.hflip)})")
    p.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    p.add_argument("--device", help=f"auto, cpu, cuda or mps (default: {FINETUNE.device})")
    p.add_argument("--precision", choices=PRECISIONS,
                   help=f"autocast precision (default: {FINETUNE.precision}, bf16 on CUDA and fp32 on the CPU)")
    p.add_argument("--compile", choices=AUTO_BOOL, help=f"torch.compile (default: {FINETUNE.compile}, on for CUDA)")
    p.add_argument("--out", default="runs", help="parent folder of run directories (default: ./runs)")
    p.add_argument("--name", help="run name (default: <time>-<model>-finetuned-<dataset>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_early_stop_flags(p)
    _add_logger_flags(p)
    p.set_defaults(func=commands.cmd_finetune)

    p = sub.add_parser("export", help="export a trained model to ONNX or TorchScript (preprocessing included) or Keras")
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--format", choices=_ChoicesOf("cnnzoo.workflows.export", "FORMATS"), default="onnx",
                   help="file format; keras writes the Keras twin (.keras, needs cnnzoo[keras]), which takes "
                        "preprocessed channels-last images (default: onnx)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the model (required)")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare with PyTorch on real test images (default: on)")
    p.add_argument("--data-dir", help="data root for the check (default: the run's, else $CNNZOO_DATA)")
    p.set_defaults(func=runs.cmd_export)

    p = sub.add_parser("doctor", help="versions, devices, data root and which data sets are present")
    p.add_argument("--data-dir", help="data root to check (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    p.set_defaults(func=zoo.cmd_doctor)
    return parser
