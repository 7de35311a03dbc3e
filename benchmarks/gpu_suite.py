"""Every GPU figure issues 4, 5 and 6 ask for, in a few calls of the lent machine.

A device session has 30 minutes and 10 per command (see /work/.library/device), so the work is cut
into stages that each fit one command, and every item runs as its own `cnnzoo` subprocess with a
timeout: a crash or a hang in one (a CUDA-graph error, say) is recorded and the rest still run.

    python3 benchmarks/gpu_suite.py smoke            # ~4 min: does every fast-path piece run at all?
    python3 benchmarks/gpu_suite.py bench            # ~9 min: the speed targets and the ablation
    python3 benchmarks/gpu_suite.py recipes --seeds 0 [--recipes a,b]   # accuracy targets, one seed
    python3 benchmarks/gpu_suite.py smoke --device cpu --quick          # plumbing check, no GPU

Each stage appends one JSON object per item to $OUT/<stage>.jsonl (or --out), writes every item's
output to $OUT/<stage>.log, and prints a table last. Items not started before --budget seconds
are recorded as skipped, so the command ends inside the device's limit.

On the device machine the package is used from the source tree (PYTHONPATH=src) and the data
travels in the git-ignored data/ folder: `cp -r ../shared/data/{FashionMNIST,MNIST} data/` here,
then `run(command="CNNZOO_DATA=data python3 benchmarks/gpu_suite.py smoke", carry=["data"])`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL_OFF = ["--precision", "fp32", "--compile", "off", "--channels-last", "off", "--cuda-graphs", "off",
           "--fused-optimizer", "off", "--cudnn-benchmark", "off"]
# The ablation turns the fast path's pieces on one after another, cheapest to explain first.
ABLATION = [
    ("all off (fp32)", ALL_OFF),
    ("+ cudnn.benchmark", ["--precision", "fp32", "--compile", "off", "--channels-last", "off",
                           "--cuda-graphs", "off", "--fused-optimizer", "off"]),
    ("+ fused optimizer", ["--precision", "fp32", "--compile", "off", "--channels-last", "off", "--cuda-graphs", "off"]),
    ("+ channels_last", ["--precision", "fp32", "--compile", "off", "--cuda-graphs", "off"]),
    ("+ bf16 autocast", ["--compile", "off", "--cuda-graphs", "off"]),
    ("+ torch.compile", ["--cuda-graphs", "off"]),
    ("+ CUDA graphs (all on)", []),
]
RECIPES = ["alexnet-fashion-mnist", "vgg11_small-fashion-mnist", "resnet18-fashion-mnist", "best-fashion-mnist",
           "resnet18-mnist", "alexnet-course"]


@dataclass
class Item:
    name: str
    kind: str  # "bench" (cnnzoo bench --json), "train" (a run directory) or "cmd" (any command)
    args: list[str]
    timeout: float
    headline: int = -1  # for "cmd" items: the output line the summary table shows
    result: dict = field(default_factory=dict)


def smoke_items(quick: bool) -> list[Item]:
    small = ["--epochs", "2", "--limit-train", "512" if quick else "4096", "--limit-test", "256" if quick else "1024"]
    env_probe = ("import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.version.cuda, "
                 "torch.cuda.is_available() and torch.cuda.get_device_name(0))")
    items = [
        Item("versions", "cmd", [sys.executable, "-c", env_probe], 60),
        Item("cuda tests", "cmd", [sys.executable, "-m", "pytest", "-q", "-x", "tests/data/test_datasets.py",
                                   "tests/data/test_batches.py", "tests/train/test_loop.py", "-k", "cuda or device"], 240),
        # The fast path as `cnnzoo train` runs it by default, with TTA through the CUDA-graphed model.
        Item("lenet5 fast path + tta", "train", ["--model", "lenet5", "--tta", *small], 240),
        Item("lenet_bn scratch norm", "train", ["--model", "lenet_bn", "--norm", "scratch", *small], 240),
        Item("lenet_bn all off", "train", ["--model", "lenet_bn", *ALL_OFF, *small], 120),
        Item("alexnet fast path", "train", ["--model", "alexnet", *small], 300),
        Item("resnet18 fast path", "train", ["--model", "resnet18", *small], 300),
        Item("bench lenet5 + baseline", "bench", ["--model", "lenet5", "--epochs", "2", "--baseline",
                                                  "--limit-train", "512" if quick else "8192"], 240),
        # Kernels per step and the costliest operators: what decides LeNet's launch-bound epoch.
        Item("profile lenet5", "cmd", [sys.executable, "benchmarks/profile_fit.py", "--model", "lenet5", "--rows", "20",
                                       "--limit-train", "512" if quick else "16384"], 240, headline=0),
    ]
    return items


def bench_items(quick: bool) -> list[Item]:
    epochs = ["--epochs", "2"] if quick else ["--epochs", "3"]
    limit = ["--limit-train", "512"] if quick else []
    items = [
        Item("lenet5 vs course", "bench", ["--model", "lenet5", "--epochs", "2" if quick else "5", "--baseline", *limit], 240),
        Item("alexnet vs course", "bench", ["--model", "alexnet", *epochs, "--baseline", *limit], 300),
        Item("vgg11_small", "bench", ["--model", "vgg11_small", *epochs, *limit], 240),
        Item("resnet18", "bench", ["--model", "resnet18", *epochs, *limit], 240),
        Item("lenet_bn torch norm", "bench", ["--model", "lenet_bn", "--epochs", "2" if quick else "5", *limit], 180),
        Item("lenet_bn scratch norm", "bench", ["--model", "lenet_bn", "--epochs", "2" if quick else "5",
                                                "--norm", "scratch", *limit], 180),
    ]
    items += [Item(f"alexnet {label}", "bench", ["--model", "alexnet", *epochs, *limit, *switches], 240)
              for label, switches in ABLATION]
    five = ["--epochs", "1" if quick else "5", *(["--limit-train", "512", "--limit-test", "256"] if quick else [])]
    items += [
        Item("lenet_bn 5 epochs fast path", "train", ["--recipe", "lenet_bn-fashion-mnist", *five], 240),
        Item("lenet_bn 5 epochs fp32", "train", ["--recipe", "lenet_bn-fashion-mnist", *five, *ALL_OFF], 240),
    ]
    return items


def recipe_items(recipes: list[str], seeds: list[int], quick: bool) -> list[Item]:
    extra = ["--epochs", "1", "--limit-train", "512", "--limit-test", "256"] if quick else []
    return [Item(f"{recipe} seed {seed}", "train", ["--recipe", recipe, "--seed", str(seed), *extra], 580)
            for recipe in recipes for seed in seeds]


def command_for(item: Item, device: str, runs: Path) -> list[str]:
    cnnzoo = [sys.executable, "-m", "cnnzoo"]
    if item.kind == "bench":
        return [*cnnzoo, "bench", "--json", "--device", device, *item.args]
    if item.kind == "train":
        return [*cnnzoo, "train", "--quiet", "--device", device, "--out", str(runs), "--name", slug(item.name),
                "--overwrite", *item.args]
    return item.args


def slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())


def read_run(run: Path) -> dict:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    config = json.loads((run / "config.json").read_text())
    last = rows[-1]
    return {
        "epochs": len(rows),
        "test_acc": float(last["test_acc"]) if last.get("test_acc") else None,
        "train_s": sum(float(r["time_s"]) for r in rows),
        "last_epoch_s": float(last["time_s"]),
        "runtime": config.get("runtime"),
    }


def run_item(item: Item, device: str, runs: Path, log, deadline: float) -> None:
    if time.monotonic() > deadline:
        item.result = {"status": "skipped", "why": "out of this command's time budget"}
        return
    command = command_for(item, device, runs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    timeout = min(item.timeout, max(1.0, deadline + item.timeout / 2 - start))
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or "", e.stderr or ""
        out, err = (s.decode() if isinstance(s, bytes) else s for s in (out, err))
    wall = time.monotonic() - start
    log.write(f"\n===== {item.name} (rc {rc}, {wall:.1f} s)\n$ {' '.join(command)}\n{out}{err}")
    log.flush()
    item.result = {"status": "ok" if rc == 0 else "failed", "rc": rc, "wall_s": round(wall, 2)}
    if rc != 0:
        item.result["error_tail"] = (err or out)[-1500:]
        return
    if item.kind == "bench":
        item.result["bench"] = json.loads(out)
    elif item.kind == "train":
        item.result["run"] = read_run(runs / slug(item.name))
    else:
        item.result["output"] = out.strip()[-8000:]


def summary_line(item: Item) -> str:
    r = item.result
    if r.get("status") != "ok":
        return f"{item.name:<34} {r.get('status', '?').upper()} {r.get('why', '')}{str(r.get('rc', ''))}"
    if "bench" in r:
        b = r["bench"]
        text = f"{b['steady_s_per_epoch']:8.3f} s/epoch {b['images_per_s']:>10,.0f} img/s"
        if b.get("fraction_of_peak") is not None:
            text += f"  {b['achieved_tflops']:.1f} TFLOP/s = {100 * b['fraction_of_peak']:.1f}% of peak"
        if b.get("compile_s") is not None:
            text += f"  compile {b['compile_s']:.1f} s"
        if b.get("speedup_vs_baseline") is not None:
            text += f"  course {b['baseline_s_per_epoch']:.2f} s/epoch -> {b['speedup_vs_baseline']:.1f}x"
        return f"{item.name:<34} {text}"
    if "run" in r:
        run = r["run"]
        acc = "n/a" if run["test_acc"] is None else f"{100 * run['test_acc']:.2f}%"
        return (f"{item.name:<34} test {acc}  {run['epochs']} epochs, train {run['train_s']:.1f} s, "
                f"wall {r['wall_s']:.0f} s")
    return f"{item.name:<34} {r['output'].splitlines()[item.headline] if r['output'] else 'ok'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("smoke", "bench", "recipes"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny subsets and single epochs: checks the plumbing")
    parser.add_argument("--budget", type=float, default=540, help="start no item after this many seconds")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--only", help="comma-separated item names to run (default: all of the stage)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-suite-out")
    args = parser.parse_args(argv)

    if args.stage == "smoke":
        items = smoke_items(args.quick)
    elif args.stage == "bench":
        items = bench_items(args.quick)
    else:
        items = recipe_items([r for r in args.recipes.split(",") if r], [int(s) for s in args.seeds.split(",")],
                             args.quick)
    if args.only:
        wanted = set(args.only.split(","))
        items = [item for item in items if item.name in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="cnnzoo-gpu-runs-"))
    deadline = time.monotonic() + args.budget
    with open(out / f"{args.stage}.log", "a") as log, open(out / f"{args.stage}.jsonl", "a") as results:
        for item in items:
            print(f"... {item.name}", flush=True)
            run_item(item, args.device, runs, log, deadline)
            results.write(json.dumps({"stage": args.stage, "name": item.name, "args": item.args,
                                      "device": args.device, **item.result}) + "\n")
            results.flush()
    print()
    for item in items:
        print(summary_line(item))
    return 0 if all(item.result.get("status") == "ok" for item in items) else 1


if __name__ == "__main__":
    sys.exit(main())
