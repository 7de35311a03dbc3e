"""The `cnnzoo` command: argparse subcommands, each a thin shell over the Python API."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# OpenMP threads otherwise spin while waiting for each other; on a shared or oversubscribed CPU
# that spinning starves the work itself (measured: 3x slower LeNet epochs on a busy 2-core box).
# Must be set before torch is imported, which the commands below do lazily.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cnnzoo.errors import CnnzooError

FALLBACK_DEFAULTS = {"optimizer": "sgd", "lr": 0.1, "epochs": 10, "batch_size": 256}
RECIPE = "from the recipe"  # in help texts: the value comes from the recipe when one is used


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


# ---------------------------------------------------------------- models / summary
def cmd_models(args) -> int:
    from cnnzoo.models.summary import models_table

    rows = models_table()
    header = ("model", "input", "classes", "params", "mult-adds", "form and origin")
    lines = [(r.name, "×".join(map(str, r.input_shape)), str(r.num_classes), f"{r.params:,}", _human(r.mult_adds),
              r.description) for r in rows]
    _print_table(header, lines, right=(2, 3, 4))
    return 0


def cmd_summary(args) -> int:
    from cnnzoo.models import build_model, get_model_spec
    from cnnzoo.models.summary import summarize

    spec = get_model_spec(args.model)
    channels, h, w = args.input or spec.input_shape
    if h != w:
        raise CnnzooError(f"--input must be square for the zoo's models, got {h}×{w}.")
    model = build_model(args.model, num_classes=args.classes, in_channels=channels, input_size=h,
                        norm=args.norm, **dict(args.option or []))
    print(summarize(model, (channels, h, w), name=args.model))
    return 0


# ---------------------------------------------------------------- train / evaluate / predict
def _base_config(model: str, dataset: str, announce: bool = False):
    """The shipped recipe `<model>-<dataset>` when there is one, else plain defaults."""
    from cnnzoo.recipes import recipe_for
    from cnnzoo.train import TrainConfig

    found = recipe_for(model, dataset)
    if found is None:
        if announce:
            settings = ", ".join(f"{name} {value}" for name, value in FALLBACK_DEFAULTS.items())
            print(f"no recipe {model}-{dataset} ships, so the fallback settings apply: {settings} (flags override "
                  "them; `cnnzoo recipes` lists tuned ones)")
        return TrainConfig(model=model, dataset=dataset, **FALLBACK_DEFAULTS)
    if announce:
        print(f"defaults from recipe {found.name} (flags override them)")
    return found.config


def _config_from_args(args):
    from cnnzoo.recipes import load_recipe
    from cnnzoo.train import TrainConfig

    if args.recipe:
        base = load_recipe(args.recipe).config
    else:
        base = _base_config(args.model or "lenet5", args.dataset or "fashion-mnist", announce=not args.quiet)
    config = base.replace(**_flag_overrides(args, base))
    _refuse_idle_norm(config)
    return config


def _flag_overrides(args, base) -> dict:
    """The TrainConfig fields the command line sets."""
    from cnnzoo.train import TrainConfig

    overrides = {name: getattr(args, name) for name in TrainConfig.field_names()
                 if getattr(args, name, None) is not None}
    if args.option:
        overrides["model_options"] = {**base.model_options, **dict(args.option)}
    return overrides


def _refuse_idle_norm(config) -> None:
    """A flag that would change nothing is a mistake worth naming (the run would record it as used)."""
    from cnnzoo.models import get_model_spec

    if config.norm == "scratch" and not get_model_spec(config.model).uses_norm:
        raise CnnzooError(f"{config.model} has no batch norm, so --norm scratch would change nothing; use a model "
                          "with batch norm (lenet_bn, alexnet_bn, vgg11_bn, resnet18).")


def cmd_train(args) -> int:
    from cnnzoo.workflows import resume_run, train_run
    from cnnzoo.train.distributed import launched_rank

    if args.dry_run:
        return _dry_run(args)
    if args.nproc is not None:
        return _launch_torchrun(args)
    main_rank = launched_rank() == 0
    args.quiet = args.quiet or not main_rank  # rank 0 speaks for all
    loggers = _loggers(args)
    if args.resume:
        _check_resume_flags(args)
        run_dir, history = resume_run(args.resume, quiet=args.quiet, epochs=args.epochs, device=args.device,
                                      data_dir=args.data_dir, callbacks=loggers)
    else:
        config = _config_from_args(args).validate()
        if not args.quiet:  # importing torch, reading the data and building the model take seconds
            print(f"loading PyTorch, the {config.dataset} images and {config.model} ...", flush=True)
        run_dir, history = train_run(config, out=args.out, name=args.name, overwrite=args.overwrite,
                                     quiet=args.quiet, callbacks=loggers)
    if main_rank:
        _print_done(run_dir, history)
    return 0


def _dry_run(args) -> int:
    """Print the configuration `train` would use, where each value comes from, and the device and
    fast-path pieces it would run with; read no data and write nothing."""
    from cnnzoo.data import resolve_data_root
    from cnnzoo.train import Runtime, TrainConfig
    from cnnzoo.train.loop import input_size_for
    from cnnzoo.workflows.resume import resume_plan
    from cnnzoo.train.rundir import default_run_name

    if args.resume:
        _check_resume_flags(args)
        run_dir, checkpoint, config = resume_plan(args.resume, epochs=args.epochs, device=args.device,
                                                  data_dir=args.data_dir)
        overrides = {name for name in RESUME_FLAGS if getattr(args, name) is not None}
        print(f"resume {run_dir.path} after epoch {checkpoint.meta['epoch']} of {config.epochs}, with the run's "
              "own settings")
        source = {name: "flag" if name in overrides else "run" for name in TrainConfig.field_names()}
        target = f"{run_dir.path} (continued)"
    else:
        config = _config_from_args(argparse.Namespace(**{**vars(args), "quiet": True})).validate()
        overrides, defaults = _flag_overrides(args, config), TrainConfig()
        if config.recipe:
            print(f"recipe {config.recipe}; flags override it")
        else:
            print(f"no recipe {config.model}-{config.dataset} ships: fallback settings "
                  + ", ".join(f"{k} {v}" for k, v in FALLBACK_DEFAULTS.items()) + "; flags override them")
        source = {name: "flag" if name in overrides
                  else "recipe" if config.recipe and getattr(config, name) != getattr(defaults, name)
                  else "fallback" if not config.recipe and name in FALLBACK_DEFAULTS else "default"
                  for name in TrainConfig.field_names()}
        target = Path(args.out) / (args.name or default_run_name(config.model, config.dataset))
    runtime = Runtime.from_config(config).describe()
    width, value_width = max(map(len, source)), max(len(str(getattr(config, name))) for name in source)
    for name, origin in source.items():
        print(f"  {name:<{width}}  {getattr(config, name)!s:<{value_width}}  {origin}")
    print("input: 1×{}×{}  data root: {}".format(*input_size_for(config), resolve_data_root(config.data_dir)))
    print(f"device {runtime['device']} ({runtime['device_name']}), precision {runtime['precision']}, "
          f"{runtime['threads']} CPU threads; fast path: "
          + ", ".join(f"{k} {'on' if runtime[k] else 'off'}" for k in
                      ("channels_last", "compile", "cuda_graphs", "fused_optimizer", "cudnn_benchmark")))
    print(f"would write {target}; --dry-run: nothing loaded, trained or written")
    return 0


RESUME_FLAGS = ("epochs", "device", "data_dir")  # what may change when a run continues


def _loggers(args) -> list:
    """The experiment loggers asked for; a missing package fails here, before any data is loaded."""
    from cnnzoo.train.loggers import MLflowLogger, TensorBoardLogger

    return [*([TensorBoardLogger()] if args.tensorboard else []), *([MLflowLogger()] if args.mlflow else [])]


def _check_resume_flags(args) -> None:
    """--resume continues a run with its own settings; a flag that would change them is refused,
    not silently ignored."""
    from cnnzoo.train import TrainConfig

    given = [name for name in (*TrainConfig.field_names(), "recipe", "option", "name")
             if name not in RESUME_FLAGS and getattr(args, name, None) not in (None, [])]
    given += ["overwrite"] if args.overwrite else []
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise CnnzooError(f"--resume continues a run with the settings it was started with, so {flags} cannot be "
                          "given with it; only --epochs, --device, --data-dir, --quiet, --tensorboard and --mlflow can.")


def _print_done(run_dir, history) -> None:
    test = history.final.get("test_acc")
    # The count tells a --limit-test subset apart from the full test set that `cnnzoo evaluate` uses.
    confusion = run_dir.read_json(run_dir.EVALUATION)["confusion"]
    measured = "n/a" if test is None else f"{100 * test:.2f}% on {sum(map(sum, confusion)):,} test images"
    print(f"done: test accuracy {measured}; report {run_dir.report_path}")


def _launch_torchrun(args) -> int:
    import os
    import subprocess

    from cnnzoo.train.distributed import DistContext

    if "LOCAL_RANK" in os.environ:
        raise CnnzooError("--nproc starts torchrun itself; leave it out when launching cnnzoo with torchrun.")
    if args.nproc < 1:
        raise CnnzooError(f"--nproc must be a positive number of processes, got {args.nproc}.")
    if not args.resume:  # a bad flag fails here once rather than once in every process
        config = _config_from_args(argparse.Namespace(**{**vars(args), "quiet": True})).validate()
        DistContext(world_size=args.nproc).per_rank_batch(config.batch_size)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
               "-m", "cnnzoo", *_without_nproc(args.argv)]
    with subprocess.Popen(command) as launcher:
        try:
            return launcher.wait()
        except KeyboardInterrupt:  # the terminal's Ctrl-C reached torchrun too: let it stop its workers
            return launcher.wait()


def _without_nproc(argv: list[str]) -> list[str]:
    """`argv` minus --nproc and its value, in every spelling argparse accepts (--nproc=2, --npr 2)."""
    kept, i = [], 0
    while i < len(argv):
        name, equals, _ = argv[i].partition("=")
        if len(name) >= 4 and "--nproc".startswith(name):
            i += 1 if equals else 2
        else:
            kept.append(argv[i])
            i += 1
    return kept


def cmd_evaluate(args) -> int:
    from cnnzoo.data import load_split
    from cnnzoo.train import evaluate
    from cnnzoo.train.device import Runtime
    from cnnzoo.workflows import load_trained
    from cnnzoo.workflows.run import evaluation_report, stored_data_dir

    trained = load_trained(args.run, device=args.device)
    config = trained.config
    split = load_split(config.dataset, args.split, root=args.data_dir or stored_data_dir(config),
                       device=next(trained.model.parameters()).device)
    runtime = Runtime.from_config(config.replace(device=args.device))
    result = evaluate(trained.model, split, input_size=trained.input_size, normalize=trained.normalize,
                      resize_mode=trained.resize_mode, batch_size=config.eval_batch_size, runtime=runtime,
                      tta=config.tta if args.tta is None else args.tta)
    report = evaluation_report(result, trained.classes)
    print(f"{args.split} accuracy {100 * result.accuracy:.2f}%  loss {result.loss:.4f}  ({len(split)} images)")
    print()
    _print_table(("class", "accuracy"), [(c, f"{100 * a:.1f}%") for c, a in
                                         zip(trained.classes, report["per_class_accuracy"])], right=(1,))
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    width = max(len(str(v)) for row in report["confusion"] for v in row) + 1
    print(" " * 4 + "".join(f"{j:>{width}}" for j in range(len(trained.classes))))
    for i, row in enumerate(report["confusion"]):
        print(f"{i:>3} " + "".join(f"{v:>{width}}" for v in row) + f"   {trained.classes[i]}")
    out = Path(args.out) if args.out else _png_beside(args.run, f"confusion-{args.split}.png")
    from cnnzoo.viz.plots import confusion_figure, save_figure

    save_figure(confusion_figure(report["confusion"], trained.classes), out)
    print(f"\nconfusion matrix image: {out}")
    return 0


def _png_beside(run: str, name: str) -> Path:
    from cnnzoo.train.rundir import RunDir

    path = Path(run)
    return (path if path.is_dir() else path.parent.parent if path.parent.name == RunDir.CHECKPOINTS
            else path.parent) / name


def cmd_predict(args) -> int:
    import torch

    from cnnzoo.data import load_image
    from cnnzoo.data.datasets import canonical_dataset_name
    from cnnzoo.train import predict
    from cnnzoo.workflows import load_trained

    if args.top_k < 1:
        raise CnnzooError(f"--top-k must be a positive number of classes, got {args.top_k}.")
    trained = load_trained(args.checkpoint, device=args.device)
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    # Frame each image the way the model's training images were made.
    framing = canonical_dataset_name(trained.config.dataset)
    failures = 0
    for path in args.images:
        try:
            image = load_image(path, invert=invert, framing=framing)
        except CnnzooError as error:
            print(f"cnnzoo: error: {error}", file=sys.stderr)
            failures += 1
            continue
        probabilities = predict(trained.model, image.unsqueeze(0), input_size=trained.input_size,
                                normalize=trained.normalize)[0]
        top = torch.topk(probabilities, min(args.top_k, len(trained.classes)))
        ranked = ", ".join(f"{trained.classes[i]} {100 * p:.1f}%" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {ranked}")
    return 2 if failures else 0


def cmd_lr_find(args) -> int:
    from cnnzoo.train.device import Runtime
    from cnnzoo.train.lr_find import RULE_STEEPEST, check_sweep, lr_find
    from cnnzoo.workflows.run import data_for, model_for
    from cnnzoo.viz.plots import image_format, save_figure

    args.quiet = False
    config = _config_from_args(args).validate()
    check_sweep(args.start_lr, args.end_lr, args.steps)
    output = Path(args.output or f"lr-find-{config.model}-{config.dataset}.png")
    image_format(output)  # a bad file name fails now, not after the sweep
    runtime = Runtime.from_config(config)
    data = data_for(config, runtime.device)
    print(f"sweeping lr from {args.start_lr:.0e} to {args.end_lr:.0e} over {args.steps} steps of {config.optimizer} "
          f"(batch {config.batch_size}, {len(data.train):,} training images) on {runtime.device}", flush=True)
    result = lr_find(model_for(config, len(data.train.classes)), data, config, start_lr=args.start_lr,
                     end_lr=args.end_lr, num_steps=args.steps, runtime=runtime)
    save_figure(result.plot(), output)
    ended = (f"stopped after {len(result.lrs)} steps, when the loss passed 4x its lowest" if result.diverged
             else f"all {len(result.lrs)} steps")
    print(f"suggested learning rate: {result.suggestion:.1e} ({result.rule}); lowest loss at lr "
          f"{result.min_loss_lr:.1e}; {ended}")
    if result.rule != RULE_STEEPEST:
        print(f"note: the loss fell by only {100 * result.loss_drop:.1f}% over the sweep, so this is a weak hint; "
              "more --steps or another --optimizer may show a clearer descent")
    start = f"--recipe {args.recipe}" if args.recipe else f"--model {config.model} --dataset {config.dataset}"
    print(f"plot: {output}\ntry: cnnzoo train {start} --optimizer {config.optimizer} --lr {result.suggestion:.1e}")
    return 0


def _add_lr_find_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="learning-rate range test: sweep the lr, plot the loss, suggest a value",
                       description="Train a copy of the model for a few hundred steps while the learning rate grows "
                                   "exponentially, plot loss against lr and print the rate where the loss falls "
                                   "fastest. Nothing is written but the plot. Unset flags come from the recipe "
                                   "<model>-<dataset> when one ships.")
    p.add_argument("--model", help="model name (default: lenet5)")
    p.add_argument("--dataset", help="fashion-mnist or mnist (default: fashion-mnist)")
    p.add_argument("--recipe", help="take the settings of a shipped recipe (see `cnnzoo recipes`)")
    p.add_argument("--option", action="append", type=_option, metavar="KEY=VALUE", help="model option, repeatable")
    p.add_argument("--norm", choices=("torch", "scratch"), help="batch-norm implementation (default: from the recipe)")
    p.add_argument("--init", choices=("default", "xavier", "kaiming"), help="weight initialization (default: from the recipe)")
    p.add_argument("--resize", dest="input_size", type=int, metavar="PX", help="input size (default: the model's)")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop"), help="default: from the recipe")
    p.add_argument("--batch-size", type=int, help="default: from the recipe")
    p.add_argument("--momentum", type=float, help="SGD momentum (default: from the recipe)")
    p.add_argument("--weight-decay", type=float, help="default: from the recipe")
    p.add_argument("--label-smoothing", type=float, help="default: from the recipe")
    p.add_argument("--limit-train", type=int, metavar="N", help="sweep on a seeded subset of N training images (default: all)")
    p.add_argument("--seed", type=int, help="default: from the recipe")
    p.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else a per-user cache)")
    p.add_argument("--device", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate of the sweep (default: 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last learning rate of the sweep (default: 10)")
    p.add_argument("--steps", type=int, default=200, help="training steps in the sweep (default: 200)")
    p.add_argument("-o", "--output", help="plot file, .png/.svg/.pdf (default: lr-find-<model>-<dataset>.png)")
    p.set_defaults(func=cmd_lr_find)


def cmd_finetune(args) -> int:
    from cnnzoo.train import TrainConfig
    from cnnzoo.workflows.finetune import finetune_config, finetune_run

    overrides = {name: getattr(args, name) for name in TrainConfig.field_names()
                 if name != "finetune_from" and getattr(args, name, None) is not None}
    config = finetune_config(args.finetune_from, **overrides).validate()
    run_dir, history = finetune_run(config, weights=args.weights, keep_head=args.keep_head, out=args.out,
                                    name=args.name, overwrite=args.overwrite, quiet=args.quiet)
    _print_done(run_dir, history)
    return 0


def cmd_export(args) -> int:
    from cnnzoo.workflows.export import export_model

    result = export_model(args.source, args.output, format=args.format, check=args.check, data_dir=args.data_dir)
    checked = ("not checked" if result.max_abs_diff is None
               else f"matches PyTorch to {result.max_abs_diff:.1e} on real test images")
    print(f"wrote {result.path} ({result.format}, uint8 N×1×28×28 in, {len(result.classes)} logits out; {checked})")
    return 0


def cmd_doctor(args) -> int:
    import platform

    import torch
    import torchvision

    from cnnzoo import __version__
    from cnnzoo.data import DATASETS, load_split, resolve_data_root

    print(f"cnnzoo {__version__}  torch {torch.__version__}  torchvision {torchvision.__version__}  "
          f"python {platform.python_version()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"device cuda:{i}: {torch.cuda.get_device_name(i)}")
    else:
        print("device: cpu only (no CUDA GPU found)")
    print(f"cpu threads: {torch.get_num_threads()}")
    root = resolve_data_root(args.data_dir)
    print(f"data root: {root}")
    for name in DATASETS:
        try:
            sizes = [len(load_split(name, split, root=root, download=False)) for split in ("train", "test")]
            print(f"  {name}: present, checksums verified ({sizes[0]:,} train / {sizes[1]:,} test images)")
        except CnnzooError as error:
            print(f"  {name}: not usable: {error}")
    return 0


# ---------------------------------------------------------------- pictures
def cmd_draw(args) -> int:
    from cnnzoo.viz.diagrams import draw_model

    print(f"wrote {draw_model(args.model, args.output, style=args.style, input_shape=args.input)}")
    return 0


def cmd_show(args) -> int:
    from cnnzoo.data import load_split
    from cnnzoo.viz.plots import display_sample, image_grid_figure, save_figure

    per_class = args.per_class is not None
    count = args.per_class if per_class else args.n
    if count < 1:
        raise CnnzooError(f"--{'per-class' if per_class else 'n'} must be a positive number of images, got {count}.")
    seed = args.seed if args.seed is not None else 0 if args.random else None
    split = load_split(args.dataset, args.split, root=args.data_dir)
    labels = split.labels.tolist()
    chosen = display_sample(labels, count, seed=seed, per_class=per_class)
    which = "first" if seed is None else f"random (seed {seed})"
    shown = f"{which} {count} of each class" if per_class else f"{which} {len(chosen)} images"
    figure = image_grid_figure(split.images[chosen], [labels[i] for i in chosen], split.classes,
                               ncols=count if per_class else 8, title=f"{args.dataset} {args.split}: {shown}")
    output = args.output or f"{args.dataset}-{args.split}.png"
    print(f"wrote {save_figure(figure, output)}")
    return 0


def cmd_report(args) -> int:
    from cnnzoo.train import RunDir
    from cnnzoo.viz.report import write_report

    run_dir = RunDir.open(args.run)
    print(f"wrote {write_report(run_dir.path, args.output)}")
    return 0


# ---------------------------------------------------------------- bench / recipes / compare
def cmd_bench(args) -> int:
    import json

    from cnnzoo.workflows.bench import bench, course_batch_size, format_table
    from cnnzoo.train.config import SWITCHES

    base = _base_config(args.model, args.dataset)
    switches = {k: getattr(args, k) for k in ("device", "precision", *SWITCHES, "limit_train", "data_dir", "norm")
                if getattr(args, k) is not None}
    batch_size = course_batch_size(args.model) if args.batch_size is None else args.batch_size
    config = base.replace(epochs=args.epochs, batch_size=batch_size, **switches)
    _refuse_idle_norm(config)
    result = bench(config, baseline=args.baseline)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(("measure", "value"), format_table(result))
        print(f"\n(this timed {config.model}; time another with --model NAME, see `cnnzoo models`)")
    return 0


def cmd_recipes(args) -> int:
    from cnnzoo.recipes import list_recipes, load_recipe

    rows = []
    for name in list_recipes():
        recipe = load_recipe(name)
        c = recipe.config
        if recipe.expected_accuracy is None:
            expected = "n/a"
        elif recipe.measured:
            expected = f"{100 * recipe.expected_accuracy:.2f}%"
        else:  # a target nobody has reached yet must not read like a result
            expected = f"target ≥ {100 * recipe.expected_accuracy:.1f}%"
        published = "" if recipe.published_accuracy is None else f"{100 * recipe.published_accuracy:.2f}%"
        rows.append((name, c.model, c.dataset, str(c.epochs), expected, published, recipe.expected_time))
    _print_table(("recipe", "model", "dataset", "epochs", "accuracy", "published", "time / notes"), rows,
                 right=(3, 4, 5))
    return 0


def cmd_compare(args) -> int:
    from cnnzoo.workflows.compare import (
        compare_folder,
        expand_runs,
        plan_runs,
        read_run,
        train_recipes,
        write_outputs,
    )

    if (args.recipes is None) == (not args.runs):
        raise CnnzooError("Pass either --recipes NAME,NAME,... to train and compare, or --runs DIR ... to compare "
                          "finished runs.")
    training_flags = ("seeds", "epochs", "limit_train", "limit_test", "device", "data_dir")
    if args.runs:
        given = [f"--{k.replace('_', '-')}" for k in training_flags if getattr(args, k) is not None]
        if given:
            raise CnnzooError(f"{', '.join(given)} apply to training with --recipes; --runs compares finished runs "
                              "as they are.")
        records = [read_run(path) for path in expand_runs(args.runs)]
        folder = compare_folder(args.out)
    else:
        overrides = {k: getattr(args, k) for k in training_flags[1:] if getattr(args, k) is not None}
        plan = plan_runs([n.strip() for n in args.recipes.split(",") if n.strip()],
                         3 if args.seeds is None else args.seeds, overrides)
        folder = compare_folder(args.out)
        records = []
        try:
            records.extend(train_recipes(plan, folder))
        except BaseException:
            if records:  # what finished is still worth its table
                print(f"stopped early; the leaderboard of the {len(records)} finished runs: "
                      f"{write_outputs(records, folder)[1]}", file=sys.stderr)
            raise
    table, md, png = write_outputs(records, folder)
    print(table)
    print(f"wrote {md} and {png}")
    return 0


# ---------------------------------------------------------------- helpers
def _human(n: int | float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def _print_table(header, rows, right=()) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(values):
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag; unset flags keep the recipe's (or the default) value."""
    g = p.add_argument_group("what to train")
    g.add_argument("--model", help="model name, see `cnnzoo models` (default: lenet5, or the recipe's)")
    g.add_argument("--dataset", help="fashion-mnist or mnist (default: fashion-mnist, or the recipe's)")
    g.add_argument("--recipe", help="start from a shipped recipe, see `cnnzoo recipes` (default: MODEL-DATASET "
                   "when it ships, else fallback settings)")
    g.add_argument("--option", action="append", type=_option, metavar="KEY=VALUE",
                   help="model option such as activation=relu, repeatable (default: none)")
    g.add_argument("--norm", choices=("torch", "scratch"),
                   help="batch-norm implementation for BN models (default: torch)")
    g.add_argument("--init", choices=("default", "xavier", "keras", "kaiming"),
                   help="weight initialization: xavier = the course's (weights only, torch's biases), keras = Glorot "
                        "weights and zero biases (default: from the recipe, else torch's own)")
    g.add_argument("--resize", dest="input_size", type=int, metavar="PX",
                   help="square input size in pixels (default: the model's, e.g. 224 for AlexNet)")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, help=f"passes over the training set (default: {RECIPE}, else 10)")
    g.add_argument("--batch-size", type=int,
                   help=f"images per optimizer step, all processes together (default: {RECIPE}, else 256)")
    g.add_argument("--lr", type=float, help=f"peak learning rate (default: {RECIPE}, else 0.1)")
    g.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop", "rmsprop_keras"),
                   help="rmsprop_keras: Keras' RMSprop rule, eps inside the square root (default: from the recipe, "
                        "else sgd)")
    g.add_argument("--momentum", type=float, help="SGD/RMSprop momentum (default: from the recipe, else 0.9 for SGD, "
                                                   "0 for RMSprop)")
    g.add_argument("--rho", type=float, help="RMSprop's squared-gradient decay, torch's alpha (default: from the "
                                             "recipe, else 0.99 for rmsprop, 0.9 for rmsprop_keras)")
    g.add_argument("--eps", type=float, help="optimizer epsilon for Adam/AdamW/RMSprop (default: from the recipe, else "
                                             "1e-8, 1e-7 for rmsprop_keras)")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help=f"Nesterov momentum for SGD (default: {RECIPE}, else off)")
    g.add_argument("--weight-decay", type=float, help=f"L2 / decoupled weight decay (default: {RECIPE}, else 0)")
    g.add_argument("--schedule", choices=("constant", "cosine", "onecycle"),
                   help=f"learning-rate schedule over the run (default: {RECIPE}, else constant)")
    g.add_argument("--warmup-epochs", type=float,
                   help=f"linear warm-up length, may be fractional (default: {RECIPE}, else 0)")
    g.add_argument("--label-smoothing", type=float, help=f"cross-entropy label smoothing (default: {RECIPE}, else 0)")
    g.add_argument("--grad-clip", type=float, metavar="NORM",
                   help=f"clip the gradient norm (default: {RECIPE}, else no clipping)")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    g.add_argument("--val-split", type=float,
                   help=f"fraction of train held out for validation, e.g. 0.2 (default: {RECIPE}, else 0)")
    g.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without validation progress and keep the best epoch's weights "
                        "(needs --val-split; default: off)")
    g.add_argument("--early-stop-min-delta", type=float, metavar="FRACTION",
                   help="validation accuracy an epoch must gain to count as progress, e.g. 0.002 (default: 0)")
    g.add_argument("--val-holdout", choices=("random", "last"),
                   help="which images --val-split holds out: random (seeded), or last, as Keras' validation_split "
                        "(default: from the recipe, else random)")
    g.add_argument("--resize-mode", choices=("tensor", "pil"),
                   help="how --resize scales: tensor (float bilinear on the device) or pil (Pillow's uint8 resize, "
                        "as the course) (default: from the recipe, else tensor)")
    g.add_argument("--crop-padding", type=int,
                   help=f"random-crop augmentation padding in pixels (default: {RECIPE}, else 0)")
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help=f"random horizontal flips (default: {RECIPE}, else off)")
    g.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help=f"mean/std normalization of the inputs (default: {RECIPE}, else on)")
    g.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help=f"test-time augmentation with mirrored images (default: {RECIPE}, else off)")
    g.add_argument("--limit-train", type=int, metavar="N", help="train on a seeded subset of N images (default: all)")
    g.add_argument("--limit-test", type=int, metavar="N",
                   help="evaluate on a seeded subset of N test images (default: all)")
    g = p.add_argument_group("execution")
    g.add_argument("--seed", type=int, help=f"seed of weights, shuffling and augmentation (default: {RECIPE}, else 0)")
    g.add_argument("--train-acc", choices=("running", "eval"),
                   help="training accuracy reported: running (train mode, during the epoch) or eval (the course's: "
                        "whole training set re-evaluated in eval mode, inside the epoch's time) (default: from the "
                        "recipe, else running)")
    _add_execution_switches(g)
    g.add_argument("--eval-batch-size", type=int, help="images per evaluation batch (default: 1024)")
    g.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="with several processes, batch norm over the global batch; needs --norm torch (default: off)")


# The fast path's pieces (TrainConfig's SWITCHES), each auto/on/off so it can be measured alone.
FAST_PATH_FLAGS = {
    "compile": "torch.compile (default auto: on for CUDA)",
    "channels-last": "NHWC memory format (default auto: CUDA, and CPU models without batch norm)",
    "cuda-graphs": "CUDA graphs through torch.compile for models under 5M parameters (default auto: on)",
    "fused-optimizer": "one fused kernel per optimizer step (default auto: on for CUDA)",
    "cudnn-benchmark": "cuDNN's per-shape algorithm search (default auto: on for CUDA)",
}


def _add_execution_switches(group) -> None:
    group.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto, the GPU when there is one)")
    group.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                       help="default auto: bf16 autocast on CUDA, fp32 on the CPU")
    for flag, text in FAST_PATH_FLAGS.items():
        group.add_argument(f"--{flag}", choices=("auto", "on", "off"), help=text)


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
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("summary", help="Keras-like layer table of a model")
    p.add_argument("model")
    p.add_argument("--input", type=_shape, metavar="C×H×W", help="input shape (default: the model's)")
    p.add_argument("--classes", type=int, help="number of classes (default: the model's)")
    p.add_argument("--norm", choices=("torch", "scratch"), default="torch",
                   help="batch-norm implementation for BN models (default: torch)")
    p.add_argument("--option", action="append", type=_option, metavar="KEY=VALUE",
                   help="model option such as activation=relu, repeatable (default: none)")
    p.set_defaults(func=cmd_summary)

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
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard (default: off)")
    g.add_argument("--mlflow", action="store_true",
                   help="also log to MLflow: $MLFLOW_TRACKING_URI, else a file store in RUN_DIR/mlruns (default: off)")
    g = p.add_argument_group("several processes (see also: torchrun --nproc_per_node N -m cnnzoo train ...)")
    g.add_argument("--nproc", type=int, metavar="N",
                   help="train data-parallel on N processes of this machine (one per GPU) via torchrun; "
                        "--batch-size stays the global batch (default: this one process)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a trained model")
    p.add_argument("run", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split to measure (default: test)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average with horizontally flipped images (default: as the run was evaluated)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--data-dir", help="data root (default: the run's, else $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    p.add_argument("-o", "--out", help="confusion-matrix PNG (default: beside the run)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a trained model")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image (default: 3)")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert to white-on-black like the data (default auto: when the background is light)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("draw", help="architecture diagram (layered boxes or a graph) as PNG/SVG")
    p.add_argument("model")
    p.add_argument("--style", choices=("layered", "graph"), default="layered",
                   help="layered: boxes sized by the tensors, as the course draws them; graph: every layer as a node "
                        "(default: layered)")
    p.add_argument("--input", type=_shape, metavar="C×H×W", help="input shape (default: the model's)")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.svg (required)")
    p.set_defaults(func=cmd_draw)

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
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", help="one self-contained HTML report of a run")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("-o", "--output", help="HTML file (default: RUN_DIR/report.html)")
    p.set_defaults(func=cmd_report)

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
    p.add_argument("--norm", choices=("torch", "scratch"),
                   help="batch-norm implementation for BN models (default: torch)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("recipes", help="list the shipped recipes with their expected accuracy and time")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("compare", help="train recipes over seeds (or read runs) into a leaderboard and a plot")
    p.add_argument("--recipes", metavar="NAME,NAME,...",
                   help="recipe names, see `cnnzoo recipes` (default: none; this or --runs)")
    p.add_argument("--runs", nargs="+", metavar="DIR",
                   help="finished run directories or folders of them, instead of --recipes (default: none)")
    p.add_argument("--seeds", type=int, help="seeds per recipe: the recipe's seed + 0, 1, ... (default 3)")
    p.add_argument("--epochs", type=int, help="epochs of every run (default: each recipe's)")
    p.add_argument("--limit-train", type=int, metavar="N", help="train on a seeded subset of N images (default: all)")
    p.add_argument("--limit-test", type=int, metavar="N", help="evaluate on a seeded subset of N images (default: all)")
    p.add_argument("--device", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    p.add_argument("--out", default="runs", help="parent of the compare-<time> folder (default: ./runs)")
    p.set_defaults(func=cmd_compare)

    _add_lr_find_parser(sub)

    p = sub.add_parser("finetune", help="fine-tune a pretrained model (torchvision or a run); writes a run directory")
    p.add_argument("--from", dest="finetune_from", required=True, metavar="torchvision:resnet18|RUN_DIR",
                   help="the pretrained source: torchvision's ImageNet ResNet-18 or a cnnzoo run/checkpoint (required)")
    p.add_argument("--weights", metavar="PATH",
                   help="torchvision state_dict saved with torch.save (default: torchvision's download)")
    p.add_argument("--keep-head", action="store_true", help="keep the source's classifier instead of a new one")
    p.add_argument("--dataset", help="fashion-mnist (default) or mnist")
    p.add_argument("--epochs", type=int, help="all epochs, the head-only ones included (default 3)")
    p.add_argument("--head-epochs", type=int, help="epochs training only the new head first (default 1)")
    p.add_argument("--resize", dest="input_size", type=int, metavar="PX", help="input size (default: the source's)")
    for flag, kind, text in (("--batch-size", int, "images per step (default: 128)"),
                             ("--lr", float, "peak learning rate (default: 0.01)"),
                             ("--momentum", float, "SGD momentum (default: 0.9)"),
                             ("--weight-decay", float, "weight decay (default: 1e-4)"),
                             ("--warmup-epochs", float, "linear warm-up length (default: 0)"),
                             ("--label-smoothing", float, "cross-entropy label smoothing (default: 0)"),
                             ("--val-split", float, "fraction of train held out for validation (default: 0)"),
                             ("--crop-padding", int, "random-crop padding in pixels (default: 0)"),
                             ("--limit-train", int, "train on a seeded subset of N images (default: all)"),
                             ("--limit-test", int, "evaluate on a seeded subset of N images (default: all)"),
                             ("--seed", int, "seed of the new head, shuffling and augmentation (default: 0)"),
                             ("--eval-batch-size", int, "images per evaluation batch (default: 1024)")):
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop"), help="(default: sgd)")
    p.add_argument("--schedule", choices=("constant", "cosine", "onecycle"),
                   help="learning-rate schedule (default: cosine)")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: off)")
    p.add_argument("--data-dir", help="data root (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    p.add_argument("--device", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="default auto: bf16 autocast on CUDA, fp32 on the CPU")
    p.add_argument("--compile", choices=("auto", "on", "off"), help="torch.compile (default auto: on for CUDA)")
    p.add_argument("--out", default="runs", help="parent folder of run directories (default: ./runs)")
    p.add_argument("--name", help="run name (default: <time>-<model>-finetuned-<dataset>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("export", help="export a trained model to ONNX or TorchScript, preprocessing included")
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="file format (default: onnx)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the model (required)")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare with PyTorch on real test images (default: on)")
    p.add_argument("--data-dir", help="data root for the check (default: the run's, else $CNNZOO_DATA)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("doctor", help="versions, devices, data root and which data sets are present")
    p.add_argument("--data-dir", help="data root to check (default: $CNNZOO_DATA, else ~/.cache/cnnzoo)")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for commands that relaunch themselves
    try:
        return args.func(args) or 0
    except CnnzooError as error:
        print(f"cnnzoo: error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except KeyboardInterrupt:
        print("cnnzoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cnnzoo evaluate RUN | head`: the reader left early. Point stdout at /dev/null so Python's
        # own flush at exit does not fail a second time with a traceback (the Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
