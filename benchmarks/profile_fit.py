"""Where a steady training epoch's time goes: torch.profiler over `fit`, exactly what `cnnzoo train`
runs, with the first epoch (compilation, CUDA-graph recording, cuDNN's search) left out.

    python3 benchmarks/profile_fit.py --model lenet5 [--limit-train 16384] [--device cuda] [--rows 25]

Prints the operators that cost the most time on the device (CPU self time on the CPU) and, on
CUDA, how many kernels each training step launches: the number that decides whether a LeNet-sized
model is bound by launch overhead. Add `--trace FILE.json` for a Chrome/Perfetto trace.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from cnnzoo.train import TrainConfig, fit
from cnnzoo.train.callbacks import Callback
from cnnzoo.train.runtime import Runtime
from cnnzoo.workflows.run import data_for, model_for


def profile_fit(config: TrainConfig, rows: int = 25, trace: str | None = None) -> str:
    """Train `config` (at least 2 epochs) and return the profile of its last epoch as a text table."""
    runtime = Runtime.from_config(config)
    data = data_for(config, runtime.device)
    model = model_for(config, len(data.train.classes))
    cuda = runtime.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    profiler = profile(activities=activities)

    class LastEpoch(Callback):
        # From the last epoch's first step to the end of its evaluation: the table's per-step figures
        # count training kernels, the kernel total includes evaluation's.
        def on_epoch_start(self, state):
            if state.epoch == config.epochs - 1:
                profiler.start()

        def on_epoch_end(self, state):
            if state.epoch == config.epochs - 1:
                profiler.stop()

    history = fit(model, data, config, quiet=True, runtime=runtime, callbacks=[LastEpoch()])
    steps = sum(1 for e in history.batch_epoch if e == config.epochs)
    if trace:
        profiler.export_chrome_trace(trace)
    averages = profiler.key_averages()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    lines = [f"{config.model}: last epoch {history.epochs[-1]['time_s']:.3f} s for {steps} steps "
             f"({1e3 * history.epochs[-1]['time_s'] / steps:.3f} ms/step), compile mode {history.compile_mode}"]
    if cuda:
        kernels = sum(e.count for e in averages if e.device_type == torch.autograd.DeviceType.CUDA)
        lines.append(f"device kernels in the window (training + evaluation): {kernels}; "
                     f"about {kernels / steps:.1f} per training step")
    lines.append(averages.table(sort_by=sort, row_limit=rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=2, help="at least 2: the last one is profiled")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit-train", type=int, default=16384)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--trace", help="also write a Chrome/Perfetto trace here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch compiles and warms up, the last is profiled")
    config = TrainConfig(model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                         optimizer="sgd", lr=0.05, limit_train=args.limit_train, limit_test=1024, device=args.device)
    print(profile_fit(config, rows=args.rows, trace=args.trace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
