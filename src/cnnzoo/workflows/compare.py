"""`cnnzoo compare`: train recipes over several seeds (or read finished runs) and rank them in a
leaderboard (Markdown) and one figure (accuracy against training time; test accuracy per epoch)."""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnzoo.errors import CnnzooError


@dataclass
class RunRecord:
    """What the leaderboard needs from one finished run directory."""

    path: Path
    recipe: str
    model: str
    dataset: str
    seed: int
    params: int
    mult_adds: int
    epochs: int
    train_s: float
    images_per_s: float
    test_acc: float | None
    test_curve: list[float | None]
    setup: dict[str, Any]  # what was trained: the config without seed and execution details




@dataclass
class Row:
    recipe: str
    model: str
    params: int
    mult_adds: int
    epochs: int
    seeds: int
    train_s: float
    images_per_s: float
    acc_mean: float | None
    acc_std: float | None


def _mult_adds(config, num_classes: int, input_shape: tuple[int, int, int]) -> int:
    import torch

    from cnnzoo.models.summary import count_mult_adds
    from cnnzoo.train.config import model_from_config

    # Meta tensors: the count needs shapes only, so VGG-sized models cost neither memory nor init time.
    with torch.device("meta"):
        model = model_from_config(config, num_classes)
    return count_mult_adds(model, input_shape)


def read_run(path: str | Path) -> RunRecord:
    """A RunRecord from a run directory written by `cnnzoo train` (it must have finished an epoch)."""
    from cnnzoo.data import DATASETS, InputSpec
    from cnnzoo.train import RunDir
    # How or where a run executed, not what it trained: runs that differ only in these (the seed among
    # them) are repetitions of one setup and share a leaderboard row.
    from cnnzoo.train.config import EXECUTION_FIELDS

    run = RunDir.open(path)
    if not run.metrics_path.is_file():
        raise CnnzooError(f"{run.path} has no {run.METRICS} yet; let it finish an epoch, or leave it out of --runs.")
    config, values = run.read_config()
    rows = run.read_metrics()
    if not rows:
        raise CnnzooError(f"{run.path} has not finished an epoch yet; let it, or leave it out of --runs.")
    times = [r["time_s"] for r in rows]  # checked: each a positive number of seconds
    # The model as the run built it: its class count and input are what config.json recorded.
    num_classes = len(values.get("classes") or DATASETS[config.dataset].classes)
    input_shape = tuple(values.get("input_shape") or (1, *InputSpec.from_config(config).input_size))
    images = sum((r["images_per_s"] or 0.0) * t for r, t in zip(rows, times))
    test_acc = rows[-1]["test_acc"]
    if run.evaluation_path.is_file():
        test_acc = run.read_evaluation()["accuracy"]
    return RunRecord(
        path=run.path, recipe=config.recipe or config.model, model=config.model, dataset=config.dataset,
        seed=config.seed, params=int(values.get("num_params") or 0), mult_adds=_mult_adds(config, num_classes, input_shape),
        epochs=len(rows), train_s=sum(times), images_per_s=images / sum(times), test_acc=test_acc,
        test_curve=[r["test_acc"] for r in rows],
        setup={k: v for k, v in config.to_dict().items() if k not in EXECUTION_FIELDS},
    )


def expand_runs(paths: Iterable[str | Path], log: Callable[[str], None] = print) -> list[Path]:
    """Run directories, each once, where a folder without config.json stands for the finished runs
    directly inside it (so a previous compare folder or a whole `runs/` can be passed; a run in
    there that has not finished an epoch is skipped with a note)."""
    from cnnzoo.train.rundir import RunDir

    found: list[Path] = []
    for path in map(Path, paths):
        if RunDir(path).config_path.is_file():
            found.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if RunDir(p).config_path.is_file()) if path.is_dir() else []
        if not inside:
            raise CnnzooError(f"{path} is neither a run directory nor a folder of run directories "
                              f"(no {RunDir.CONFIG}).")
        for run in inside:
            if RunDir(run).metrics_path.is_file():
                found.append(run)
            else:
                log(f"skipping {run}: it has not finished an epoch")
    return list({p.resolve(): p for p in found}.values())


def group_runs(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """The runs of each setup under one label: the recipe's name, followed by what differs where
    runs of one recipe were trained differently (say, `lenet5-fashion-mnist (lr=0.01)`). A second
    run of a setup with a seed already counted is left out."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        runs = groups[json.dumps(record.setup, sort_keys=True, default=str)]
        if all(r.seed != record.seed for r in runs):
            runs.append(record)
    by_name: dict[str, list[str]] = defaultdict(list)
    for key, runs in groups.items():
        by_name[runs[0].recipe].append(key)
    labelled = {}
    for name, keys in by_name.items():
        setups = [groups[k][0].setup for k in keys]
        differing = [f for f in setups[0] if len({json.dumps(s.get(f), default=str) for s in setups}) > 1]
        for key, setup in zip(keys, setups):
            detail = ", ".join(f"{f}={setup.get(f)}" for f in differing)
            labelled[f"{name} ({detail})" if detail else name] = groups[key]
    return labelled


def leaderboard(records: list[RunRecord]) -> list[Row]:
    """One row per setup, best mean test accuracy first; std is the sample std over seeds."""
    rows = []
    for recipe, runs in group_runs(records).items():
        accs = [r.test_acc for r in runs if r.test_acc is not None]
        rows.append(Row(
            recipe=recipe, model=runs[0].model, params=runs[0].params, mult_adds=runs[0].mult_adds,
            epochs=max(r.epochs for r in runs), seeds=len(runs),
            train_s=statistics.fmean(r.train_s for r in runs),
            images_per_s=statistics.fmean(r.images_per_s for r in runs),
            acc_mean=statistics.fmean(accs) if accs else None,
            acc_std=statistics.stdev(accs) if len(accs) > 1 else None,
        ))
    return sorted(rows, key=lambda r: -1.0 if r.acc_mean is None else r.acc_mean, reverse=True)


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def markdown_table(rows: list[Row]) -> str:
    header = ("rank", "recipe", "model", "params", "mult-adds", "epochs", "seeds", "train time (s)", "images/s",
              "test accuracy (%)")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i != 1 and i != 2 else "---"
                                                              for i in range(len(header))) + "|"]
    for rank, row in enumerate(rows, 1):
        if row.acc_mean is None:
            acc = "n/a"
        elif row.acc_std is None:
            acc = f"{100 * row.acc_mean:.2f}"
        else:
            acc = f"{100 * row.acc_mean:.2f} ± {100 * row.acc_std:.2f}"
        cells = (str(rank), row.recipe, row.model, f"{row.params:,}", _count(row.mult_adds), str(row.epochs),
                 str(row.seeds), f"{row.train_s:.1f}", f"{row.images_per_s:,.0f}", acc)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare_figure(records: list[RunRecord]):
    """Left: final test accuracy against training time, one colour per recipe. Right: test
    accuracy per epoch for every run, same colours."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 4.8))
    scatter, curves = fig.subplots(1, 2)
    groups = group_runs(records)
    colours = {name: f"C{i % 10}" for i, name in enumerate(groups)}
    for name, runs in groups.items():
        points = [(r.train_s, 100 * r.test_acc) for r in runs if r.test_acc is not None]
        if points:
            scatter.scatter(*zip(*points), color=colours[name], label=name, s=36)
            x, y = points[-1]
            scatter.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8,
                             color=colours[name])
        for i, run in enumerate(runs):
            epochs = [e for e, a in enumerate(run.test_curve, 1) if a is not None]
            accs = [100 * a for a in run.test_curve if a is not None]
            curves.plot(epochs, accs, marker="o", markersize=3, color=colours[name], alpha=0.8,
                        label=name if i == 0 else None)
    scatter.set(title="test accuracy against training time (one point per run)", xlabel="training time (s)",
                ylabel="test accuracy (%)")
    curves.set(title="test accuracy per epoch", xlabel="epoch", ylabel="test accuracy (%)")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (scatter, curves):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_outputs(records: list[RunRecord], folder: Path) -> tuple[str, Path, Path]:
    """Write leaderboard.md and compare.png into `folder`; return (table, md path, png path)."""
    from cnnzoo.atomic import atomic_write_text
    from cnnzoo.viz.plots import save_figure

    table = markdown_table(leaderboard(records))
    dataset = ", ".join(sorted({r.dataset for r in records}))
    runs = "\n".join(f"- `{r.path}`: seed {r.seed}, {r.epochs} epochs, test "
                     + ("n/a" if r.test_acc is None else f"{100 * r.test_acc:.2f}%") for r in records)
    md = folder / "leaderboard.md"
    atomic_write_text(md, f"# Leaderboard ({dataset})\n\nTest accuracy is the mean ± sample standard "
                          f"deviation over seeds; training time excludes evaluation.\n\n{table}\n## Runs\n\n{runs}\n")
    png = save_figure(compare_figure(records), folder / "compare.png")
    return table, md, png


def plan_runs(names: list[str], seeds: int, overrides: dict[str, Any]) -> list[tuple[str, Any]]:
    """(run name, validated TrainConfig) for every recipe and seed (the recipe's seed + i), each name
    once; every mistake surfaces here, before any folder is made or any training starts."""
    from cnnzoo.recipes import load_recipe
    from cnnzoo.train.runtime import resolve_device

    names = list(dict.fromkeys(names))
    if not names:
        raise CnnzooError("--recipes names no recipe; give NAME,NAME,... (see `cnnzoo recipes`).")
    if seeds < 1:
        raise CnnzooError(f"--seeds must be at least 1, got {seeds}.")
    plan = []
    for recipe in map(load_recipe, names):
        for i in range(seeds):
            config = recipe.config.replace(**overrides, seed=recipe.config.seed + i).validate()
            plan.append((f"{recipe.name}-s{config.seed}", config))
    resolve_device(plan[0][1].device)
    return plan


def train_recipes(plan: list[tuple[str, Any]], folder: Path,
                  log: Callable[[str], None] = print) -> Iterable[RunRecord]:
    """Train each planned run under `folder`, yielding its record as soon as it has finished."""
    from cnnzoo.workflows.run import train_run

    for name, config in plan:
        log(f"training {name} ({config.epochs} epochs)")
        start = time.perf_counter()
        run_dir, _ = train_run(config, out=folder, name=name, quiet=True)
        record = read_run(run_dir.path)
        acc = "n/a" if record.test_acc is None else f"{100 * record.test_acc:.2f}%"
        log(f"  test {acc}, {time.perf_counter() - start:.1f} s wall")
        yield record


def compare_folder(out: str | Path) -> Path:
    folder = Path(out) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while folder.exists():  # two compares in the same second must not share a folder
        suffix += 1
        folder = Path(out) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
    folder.mkdir(parents=True)
    return folder
