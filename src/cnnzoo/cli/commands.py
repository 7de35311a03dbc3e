"""The commands that train or time models (`train`, `lr-find`, `finetune`, `bench`, `compare`, `recipes`)
and how a run's TrainConfig comes from a recipe and the flags: each `cmd_<name>(args)` a thin shell over
the Python API, importing what it needs when it runs (why: cli/parser.py).
The commands that look at the zoo or the machine are in cli/zoo.py; those that look at a trained model
in cli/runs.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnzoo.cli.format import print_table
from cnnzoo.cli.launch import launch_torchrun
from cnnzoo.errors import CnnzooError

# Without a recipe a run takes TrainConfig's own defaults; these are the ones worth naming then.
FALLBACK_SHOWN = ("optimizer", "lr", "epochs", "batch_size")


# ---------------------------------------------------------------- train / lr-find / finetune
def base_config(model: str, dataset: str, announce: bool = False):
    """The shipped recipe `<model>-<dataset>` when there is one, else plain defaults."""
    from cnnzoo.recipes import recipe_for
    from cnnzoo.train import TrainConfig

    found = recipe_for(model, dataset)
    if found is None:
        config = TrainConfig(model=model, dataset=dataset)
        if announce:
            settings = ", ".join(f"{name} {getattr(config, name)}" for name in FALLBACK_SHOWN)
            print(f"no recipe {model}-{dataset} ships, so the fallback settings apply: {settings} (flags override "
                  "them; `cnnzoo recipes` lists tuned ones)")
        return config
    if announce:
        print(f"defaults from recipe {found.name} (flags override them)")
    return found.config


def config_from_args(args):
    from cnnzoo.recipes import load_recipe

    if args.recipe:
        base = load_recipe(args.recipe).config
    else:
        base = base_config(args.model or "lenet5", args.dataset or "fashion-mnist", announce=not args.quiet)
    config = base.replace(**flag_overrides(args, base))
    refuse_idle_norm(config)
    return config


def flag_overrides(args, base=None) -> dict:
    """The TrainConfig fields the command line sets. Only a field with an Option has a flag of its name
    (finetune's --from fills finetune_from, which finetune_config sets itself); --option KEY=VALUE, on
    the commands that have it, adds to `base`'s model options."""
    from cnnzoo.train.config import OPTIONS

    overrides = {name: getattr(args, name) for name in OPTIONS if getattr(args, name, None) is not None}
    if getattr(args, "option", None):
        overrides["model_options"] = {**base.model_options, **dict(args.option)}
    return overrides


def refuse_idle_norm(config) -> None:
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
        quiet = argparse.Namespace(**{**vars(args), "quiet": True})
        return launch_torchrun(args.argv, args.nproc, None if args.resume else config_from_args(quiet).validate())
    main_rank = launched_rank() == 0
    args.quiet = args.quiet or not main_rank  # rank 0 speaks for all
    loggers = _loggers(args)
    if args.resume:
        _check_resume_flags(args)
        run_dir, history = resume_run(args.resume, quiet=args.quiet, epochs=args.epochs, device=args.device,
                                      data_dir=args.data_dir, callbacks=loggers)
    else:
        config = config_from_args(args).validate()
        if not args.quiet:  # importing torch, reading the data and building the model take seconds
            print(f"loading PyTorch, the {config.dataset} images and {config.model} ...", flush=True)
        run_dir, history = train_run(config, out=args.out, name=args.name, overwrite=args.overwrite,
                                     quiet=args.quiet, callbacks=loggers)
    if main_rank:
        _print_done(run_dir)
    return 0


def _dry_run(args) -> int:
    """Print the configuration `train` would use, where each value comes from, and the device and
    fast-path pieces it would run with; read no data and write nothing."""
    from cnnzoo.data import InputSpec, resolve_data_root
    from cnnzoo.train import Runtime, TrainConfig
    from cnnzoo.train.checkpoint import RESUME_MAY_CHANGE
    from cnnzoo.train.config import SWITCHES
    from cnnzoo.workflows.resume import resume_plan
    from cnnzoo.train.rundir import default_run_name

    if args.resume:
        _check_resume_flags(args)
        run_dir, checkpoint, config = resume_plan(args.resume, epochs=args.epochs, device=args.device,
                                                  data_dir=args.data_dir)
        overrides = {name for name in RESUME_MAY_CHANGE if getattr(args, name) is not None}
        print(f"resume {run_dir.path} after epoch {checkpoint.meta['epoch']} of {config.epochs}, with the run's "
              "own settings")
        source = {name: "flag" if name in overrides else "run" for name in TrainConfig.field_names()}
        target = f"{run_dir.path} (continued)"
    else:
        config = config_from_args(argparse.Namespace(**{**vars(args), "quiet": True})).validate()
        overrides, defaults = flag_overrides(args, config), TrainConfig()
        if config.recipe:
            print(f"recipe {config.recipe}; flags override it")
        else:
            print(f"no recipe {config.model}-{config.dataset} ships: fallback settings "
                  + ", ".join(f"{k} {getattr(defaults, k)}" for k in FALLBACK_SHOWN) + "; flags override them")
        source = {name: "flag" if name in overrides
                  else "recipe" if config.recipe and getattr(config, name) != getattr(defaults, name)
                  else "fallback" if not config.recipe and name in FALLBACK_SHOWN else "default"
                  for name in TrainConfig.field_names()}
        target = Path(args.out) / (args.name or default_run_name(config.model, config.dataset))
    runtime = Runtime.from_config(config).describe()
    width, value_width = max(map(len, source)), max(len(str(getattr(config, name))) for name in source)
    for name, origin in source.items():
        print(f"  {name:<{width}}  {getattr(config, name)!s:<{value_width}}  {origin}")
    print("input: 1×{}×{}  data root: {}".format(*InputSpec.from_config(config).input_size,
                                                 resolve_data_root(config.data_dir)))
    print(f"device {runtime['device']} ({runtime['device_name']}), precision {runtime['precision']}, "
          f"{runtime['threads']} CPU threads; fast path: "
          + ", ".join(f"{k} {'on' if runtime[k] else 'off'}" for k in SWITCHES))
    print(f"why: precision: {runtime['reasons']['precision']}; compile: {runtime['reasons']['compile']}")
    print(f"would write {target}; --dry-run: nothing loaded, trained or written")
    return 0


# The flags of `train` that do not touch the run's settings, so --resume takes them too.
RESUME_ALSO = ("--quiet", "--tensorboard", "--mlflow", "--nproc", "--dry-run")


def _loggers(args) -> list:
    """The experiment loggers asked for; a missing package fails here, before any data is loaded."""
    from cnnzoo.train.loggers import MLflowLogger, TensorBoardLogger

    return [*([TensorBoardLogger()] if args.tensorboard else []), *([MLflowLogger()] if args.mlflow else [])]


def _check_resume_flags(args) -> None:
    """--resume continues a run with its own settings; a flag that would change them is refused,
    not silently ignored."""
    from cnnzoo.train import TrainConfig
    from cnnzoo.train.checkpoint import RESUME_MAY_CHANGE
    from cnnzoo.train.config import OPTIONS

    def flag(name: str) -> str:  # "option", "name" and "overwrite" are the command's, not TrainConfig's
        return OPTIONS[name].flag_name(name) if name in OPTIONS else "--" + name

    # TrainConfig has a "recipe" field too: each flag once ("--recipe, --recipe" was printed).
    given = [name for name in dict.fromkeys((*TrainConfig.field_names(), "recipe", "option", "name"))
             if name not in RESUME_MAY_CHANGE and getattr(args, name, None) not in (None, [])]
    given += ["overwrite"] if args.overwrite else []
    if given:
        allowed = [*map(flag, RESUME_MAY_CHANGE), *RESUME_ALSO]
        raise CnnzooError(f"--resume continues a run with the settings it was started with, so "
                          f"{', '.join(map(flag, given))} cannot be given with it; only {', '.join(allowed[:-1])} "
                          f"and {allowed[-1]} can.")


def _print_done(run_dir) -> None:
    # evaluation.json, not the last epoch: after early stopping the run keeps its best epoch's weights.
    # The count tells a --limit-test subset apart from the full test set that `cnnzoo evaluate` uses.
    evaluation = run_dir.read_evaluation()
    measured = f"{100 * evaluation['accuracy']:.2f}% on {evaluation['images']:,} test images" \
        if "images" in evaluation else f"{100 * evaluation['accuracy']:.2f}%"
    print(f"done: test accuracy {measured}; report {run_dir.report_path}")


def cmd_lr_find(args) -> int:
    from cnnzoo.train.lr_finder import RULE_STEEPEST, check_sweep, lr_find
    from cnnzoo.workflows.run import prepare_run
    from cnnzoo.viz.plots import image_format, save_figure

    args.quiet = False
    config = config_from_args(args).validate()
    check_sweep(args.start_lr, args.end_lr, args.steps)
    output = Path(args.output or f"lr-find-{config.model}-{config.dataset}.png")
    image_format(output)  # a bad file name fails now, not after the sweep
    runtime, data, model = prepare_run(config)
    print(f"sweeping lr from {args.start_lr:.0e} to {args.end_lr:.0e} over {args.steps} steps of {config.optimizer} "
          f"(batch {config.batch_size}, {len(data.train):,} training images) on {runtime.device}", flush=True)
    result = lr_find(model, data, config, start_lr=args.start_lr,
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


def cmd_finetune(args) -> int:
    from cnnzoo.workflows.finetune import finetune_config, finetune_run

    config = finetune_config(args.finetune_from, **flag_overrides(args)).validate()
    run_dir, history = finetune_run(config, weights=args.weights, keep_head=args.keep_head, out=args.out,
                                    name=args.name, overwrite=args.overwrite, quiet=args.quiet,
                                    callbacks=_loggers(args))
    _print_done(run_dir)
    return 0


# ---------------------------------------------------------------- bench / recipes / compare
def cmd_bench(args) -> int:
    import json

    from cnnzoo.workflows.bench import bench, course_batch_size, format_table

    base = base_config(args.model, args.dataset)
    config = base.replace(**{"batch_size": course_batch_size(args.model), **flag_overrides(args)})
    refuse_idle_norm(config)
    result = bench(config, baseline=args.baseline)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(("measure", "value"), format_table(result))
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
    print_table(("recipe", "model", "dataset", "epochs", "accuracy", "published", "time / notes"), rows,
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
