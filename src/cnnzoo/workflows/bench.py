"""`cnnzoo bench`: seconds per epoch, images/s, TFLOP/s and memory of our trainer, and of the
course's DataLoader loop on the same model, data and device for comparison.

Our side is `fit` itself (quiet, no run directory), so what is measured is what `cnnzoo train`
runs. The baseline is the course's loop, kept deliberately as taught: PIL conversion, `Resize`
and `ToTensor` per sample in two loader workers, a host-to-device copy and a host sync
(`.item()`) per batch, fp32, Xavier init, plain SGD.
"""

from __future__ import annotations

import copy
import math
import os
import resource
import sys
import time
from typing import Any

import torch
from torch import nn

from cnnzoo.data import DataSplit, InputSpec
from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model
from cnnzoo.train.callbacks import Callback, FitState
from cnnzoo.train.config import SWITCHES, TrainConfig
from cnnzoo.train.fallback import runtime_after
from cnnzoo.train.loop import fit, synchronize
from cnnzoo.workflows.run import prepare_run, versions

# Dense peak TFLOP/s by (device-name fragment, precision); H200 has the H100 SXM's compute. The
# fp32 figures are TF32 tensor-core peaks: torch runs fp32 convolutions through cuDNN in TF32 by
# default, and convolutions are nearly all of these networks' arithmetic.
PEAK_TFLOPS: dict[tuple[str, str], float] = {
    ("H100 PCIe", "bf16"): 756.0, ("H100 PCIe", "fp32"): 378.0,
    ("H100", "bf16"): 989.0, ("H100", "fp32"): 494.7,
    ("H200", "bf16"): 989.0, ("H200", "fp32"): 494.7,
    ("A100", "bf16"): 312.0, ("A100", "fp32"): 156.0,
    # Volta and Turing run fp16 on tensor cores (what --precision auto picks there) and have no TF32:
    # their fp32 peak is the plain CUDA-core one.
    ("V100", "fp16"): 125.0, ("V100", "fp32"): 15.7,
    ("T4", "fp16"): 65.0, ("T4", "fp32"): 8.1,
}

FIELDS = (
    "model", "dataset", "device", "device_name", "threads", "precision", *SWITCHES, "compile_mode", "fallbacks",
    "batch_size", "input_size",
    "train_images", "epochs", "epoch_s", "steady_epochs",
    "steady_s_per_epoch", "images_per_s", "host_ms_per_step", "compile_s", "train_flops_per_image", "achieved_tflops",
    "peak_tflops", "fraction_of_peak", "cores_used", "load_average", "peak_memory_mb", "peak_memory_kind", "test_acc",
    "baseline_epoch_s", "baseline_s_per_epoch", "baseline_images_per_s", "speedup_vs_baseline", "versions",
)


def course_batch_size(model: str) -> int:
    """The course's batch: 256 for LeNet, 128 for the 224-px networks (SPEC)."""
    return 256 if model.startswith("lenet") else 128


def course_lr(model: str) -> float:
    return 0.9 if model.startswith("lenet") else 0.01


def steady(times: list[float]) -> tuple[list[int], float]:
    """The epochs (1-based) counted as steady state and their mean: all but the first, which pays
    for warm-up (allocator, autotuning, workers)."""
    epochs = list(range(2, len(times) + 1))
    return epochs, sum(times[e - 1] for e in epochs) / len(epochs)


def peak_tflops(device_name: str, precision: str) -> float | None:
    for (fragment, dtype), value in PEAK_TFLOPS.items():
        if fragment in device_name and dtype == precision:
            return value
    return None


def train_step_flops(model: nn.Module, batch_size: int, input_shape: tuple[int, int, int]) -> float:
    """FLOPs of one forward + backward pass over one batch, divided by the batch size.

    Counted on a meta-device copy: FlopCounterMode only needs shapes, so even AlexNet-224
    costs no arithmetic and the real model's weights and gradients stay untouched.
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    meta.train()
    x = torch.zeros((batch_size, *input_shape), device="meta")
    y = torch.zeros(batch_size, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(meta(x), y).backward()
    return counter.get_total_flops() / batch_size


class EpochCpuTime(Callback):
    """The process's CPU seconds (all its threads) over the span of each epoch that `time_s` times.
    CPU over wall time says how many cores the run really got: on a CPU shared with other programs,
    2 threads that get about 1 core mean a slower epoch that is not the code's doing.

    Also the host's time per step: the epoch's loop up to its last step, before the one sync that
    ends the epoch. On a GPU that is what Python costs per step (the device runs behind it), unless
    the host waited on a read (the divergence guard's, every 50 steps); on the CPU it is the step."""

    step_every = sys.maxsize  # only the epoch's last step: listening per step would cost what it measures

    def __init__(self) -> None:
        self.cpu_s: list[float] = []
        self.host_s_per_step: list[float] = []
        self._start = 0.0

    def on_epoch_start(self, state: FitState) -> None:
        self._start = time.process_time()

    def on_step_end(self, state: FitState) -> None:
        self.cpu_s.append(time.process_time() - self._start)
        self.host_s_per_step.append((time.perf_counter() - state.epoch_start) / state.steps_per_epoch)

    def on_epoch_end(self, state: FitState) -> None:
        if state.config.train_acc == "eval":  # then `time_s` includes the epoch's evaluations too
            self.cpu_s[-1] = time.process_time() - self._start


def load_average() -> float | None:
    """The 1-minute load average (runnable processes, this one's included), None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return None


def _peak_memory(device: torch.device) -> tuple[float | None, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    # Linux reports ru_maxrss in KiB; it is the whole process's peak, data and Python included.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, "cpu_peak_rss"


class CourseDataset(torch.utils.data.Dataset):
    """torchvision's FashionMNIST item path over our uint8 tensors: PIL image, then
    `Compose([Resize(size), ToTensor()])` (Resize only when the model wants another size, as
    d2l's `load_data_fashion_mnist(resize=None)` does)."""

    def __init__(self, split: DataSplit, input_size: tuple[int, int]):
        from torchvision import transforms

        self.images = split.images.cpu()
        self.labels = split.labels.cpu()
        steps = [transforms.ToTensor()]
        if tuple(self.images.shape[-2:]) != tuple(input_size):
            steps.insert(0, transforms.Resize(input_size))
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.images[index, 0].numpy(), mode="L")
        return self.transform(image), int(self.labels[index])


def course_epoch_times(config: TrainConfig, split: DataSplit, input_size: tuple[int, int],
                       device: torch.device) -> list[float]:
    """Train as the course does for `config.epochs` epochs; return each epoch's seconds."""
    torch.backends.cudnn.benchmark = False  # torch's default, which the course keeps; our run may have set it
    torch.manual_seed(config.seed)
    # The course's model, not the config's (model_from_config): the course initializes with Xavier.
    model = build_model(config.model, num_classes=len(split.classes), in_channels=1, input_size=input_size,
                        init="xavier").to(device)
    loader = torch.utils.data.DataLoader(CourseDataset(split, input_size), batch_size=config.batch_size,
                                         shuffle=True, num_workers=2, pin_memory=device.type == "cuda")
    optimizer = torch.optim.SGD(model.parameters(), lr=course_lr(config.model))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(config.epochs):
        model.train()
        total_loss, total_correct, seen = 0.0, 0.0, 0
        start = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # the course's per-batch metrics: their .item() syncs are part of its cost
                total_loss += loss.item() * len(y)
                total_correct += (logits.argmax(1) == y).float().sum().item()
                seen += len(y)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def bench(config: TrainConfig, baseline: bool = False) -> dict[str, Any]:
    """Measure `fit` on `config` (and the course loop when `baseline`); every FIELDS key is set."""
    config = config.validate()
    if config.epochs < 2:
        raise CnnzooError(f"cnnzoo bench needs --epochs 2 or more, got {config.epochs}: the first epoch is warm-up "
                          "and the steady state is timed on the epochs after it.")
    runtime, data, model = prepare_run(config)
    size = InputSpec.from_config(config, data.info).input_size
    flops_per_image = train_step_flops(model, config.batch_size, (1, *size))

    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    load = load_average()
    cpu_time = EpochCpuTime()
    history = fit(model, data, config, quiet=True, runtime=runtime, callbacks=[cpu_time])
    memory_mb, memory_kind = _peak_memory(runtime.device)

    times = [row["time_s"] for row in history.epochs]
    steady_epochs, steady_s = steady(times)
    images = len(data.train)
    ran = runtime_after(runtime, history.fallbacks)  # a piece that failed and fell back did not run
    described = ran.describe()
    achieved = flops_per_image * images / steady_s / 1e12
    peak = peak_tflops(described["device_name"], described["precision"]) if runtime.device.type == "cuda" else None
    result = {
        "model": config.model, "dataset": config.dataset, **described,
        # Big models compile without CUDA graphs even when they are allowed: report what ran.
        "cuda_graphs": history.compile_mode == "cuda-graph", "compile_mode": history.compile_mode,
        "fallbacks": history.fallbacks,
        "batch_size": config.batch_size, "input_size": list(size), "train_images": images,
        "epochs": config.epochs, "epoch_s": times, "steady_epochs": steady_epochs,
        "steady_s_per_epoch": steady_s, "images_per_s": images / steady_s,
        "host_ms_per_step": 1e3 * sum(cpu_time.host_s_per_step[e - 1] for e in steady_epochs) / len(steady_epochs),
        "compile_s": history.compile_s if ran.compile else None,
        "train_flops_per_image": flops_per_image, "achieved_tflops": achieved, "peak_tflops": peak,
        "fraction_of_peak": achieved / peak if peak else None,
        "cores_used": (sum(cpu_time.cpu_s[e - 1] for e in steady_epochs) / len(steady_epochs) / steady_s
                       if runtime.device.type == "cpu" else None),
        "load_average": load,
        "peak_memory_mb": memory_mb, "peak_memory_kind": memory_kind,
        "test_acc": history.final.get("test_acc"),
        "baseline_epoch_s": None, "baseline_s_per_epoch": None, "baseline_images_per_s": None,
        "speedup_vs_baseline": None, "versions": versions(),
    }
    if baseline:
        course = course_epoch_times(config, data.train.to("cpu"), size, runtime.device)
        _, course_s = steady(course)
        result.update(baseline_epoch_s=course, baseline_s_per_epoch=course_s,
                      baseline_images_per_s=images / course_s, speedup_vs_baseline=course_s / steady_s)
    return {name: result.get(name) for name in FIELDS}


def cores_used_text(result: dict[str, Any]) -> str:
    """`cores_used` of `threads`, with the load average, and a warning when the run got a core less."""
    if result["cores_used"] is None:
        return "n/a"
    load = "n/a" if result["load_average"] is None else f"{result['load_average']:.1f}"
    text = f"{result['cores_used']:.2f} of {result['threads']} threads (load average {load} at the start)"
    if result["cores_used"] < result["threads"] - 0.5:
        text += "; other programs held a core, so these times measure the machine's load too"
    return text


def format_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows for the human-readable report."""

    def num(value, fmt: str) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    switches = ", ".join(f"{k}={'on' if result[k] else 'off'}" for k in SWITCHES)
    rows = [
        ("model", (f"{result['model']} on {result['dataset']}, {result['train_images']:,} images, "
                   f"{result['input_size'][0]}×{result['input_size'][1]} px, batch {result['batch_size']}")),
        ("device", (f"{result['device_name']} ({result['device']}, {result['threads']} threads), "
                    f"{result['precision']}, {switches}")),
        ("epoch times (s)", ", ".join(f"{t:.2f}" for t in result["epoch_s"])),
        ("steady s/epoch", f"{result['steady_s_per_epoch']:.3f} (epochs {', '.join(map(str, result['steady_epochs']))})"),
        ("images/s", f"{result['images_per_s']:,.0f}"),
        ("host ms/step", f"{num(result['host_ms_per_step'], '.3f')} (the loop before the epoch's sync)"),
        ("compile s", num(result["compile_s"], ".2f")),
        ("train GFLOP/image", num(result["train_flops_per_image"] / 1e9, ".4f")),
        ("achieved TFLOP/s", num(result["achieved_tflops"], ".3f")),
        ("fraction of peak", "n/a" if result["fraction_of_peak"] is None else
         f"{100 * result['fraction_of_peak']:.1f}% of {result['peak_tflops']:g}"),
        ("cores used", cores_used_text(result)),
        ("peak memory MiB", f"{num(result['peak_memory_mb'], ',.0f')} ({result['peak_memory_kind']})"),
        ("test accuracy", "n/a" if result["test_acc"] is None else f"{100 * result['test_acc']:.2f}%"),
    ]
    if result["baseline_s_per_epoch"] is not None:
        rows += [
            ("course epochs (s)", ", ".join(f"{t:.2f}" for t in result["baseline_epoch_s"])),
            ("course s/epoch", f"{result['baseline_s_per_epoch']:.3f}"),
            ("course images/s", f"{result['baseline_images_per_s']:,.0f}"),
            ("speed-up", f"{result['speedup_vs_baseline']:.2f}×"),
        ]
    return rows
