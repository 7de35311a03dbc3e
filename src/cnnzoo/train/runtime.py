"""The one place that decides device and precision; nothing else calls `.cuda()`."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from cnnzoo.device import resolve_device
from cnnzoo.train.config import SWITCHES


def usable_cpu_count() -> int:
    """The cores this process may run on: its affinity mask where the OS has one (Linux), else all."""
    if hasattr(os, "sched_getaffinity"):  # absent on macOS and Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _has_batch_norm(model: str) -> bool:
    # NHWC is cuDNN's native tensor-core layout, and oneDNN's fastest for conv and pooling on the
    # CPU (LeNet-5: 5.9 vs 7.6 s/epoch on 2 cores) -- except that CPU batch norm has no fast NHWC
    # kernel (LeNet-BN: 7.5 vs 6.5 s/epoch), so the CPU keeps NCHW for models with batch norm.
    from cnnzoo.models import get_model_spec, list_models

    return model not in list_models() or get_model_spec(model).uses_norm


def _switch(value: str, auto: bool) -> bool:
    return auto if value == "auto" else value == "on"


@dataclass(frozen=True)
class Runtime:
    """How a run executes: each speed trick is a separate switch so it can be measured alone."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    compile: bool
    cuda_graphs: bool
    fused_optimizer: bool
    cudnn_benchmark: bool
    # The pieces the user asked for explicitly ("on", or precision "bf16"): these are never turned
    # off when they fail (cnnzoo.train.fastpath); "auto" ones fall back to the safer setting.
    forced: frozenset[str] = frozenset()
    # Any torch.compile backend; "inductor" is torch's compiler, the only one CUDA graphs apply to.
    compile_backend: Any = "inductor"

    @classmethod
    def from_config(cls, config, device: torch.device | None = None) -> Runtime:
        """`device` overrides `config.device`: under torchrun each rank gets its own GPU."""
        device = device or resolve_device(config.device)
        cuda = device.type == "cuda"
        if config.precision == "bf16":
            amp_dtype = torch.bfloat16
        elif config.precision == "fp32":
            amp_dtype = None
        else:
            # bf16 halves memory traffic and runs on tensor cores; on the CPU it is usually slower.
            amp_dtype = torch.bfloat16 if cuda else None
        forced = {name for name in SWITCHES if getattr(config, name) == "on"}
        return cls(
            forced=frozenset(forced | ({"precision"} if config.precision == "bf16" else set())),
            device=device,
            amp_dtype=amp_dtype,
            channels_last=_switch(config.channels_last, cuda or not _has_batch_norm(config.model)),
            compile=_switch(config.compile, cuda),
            # Graph replay removes per-kernel launch cost, which dominates for LeNet-sized models.
            cuda_graphs=cuda and _switch(config.cuda_graphs, True),
            # One multi-tensor kernel per optimizer step instead of one per parameter.
            fused_optimizer=_switch(config.fused_optimizer, cuda),
            # cuDNN times its convolution algorithms once per input shape and keeps the fastest;
            # every training step repeats the same shapes, so the one-off search pays at once.
            cudnn_benchmark=cuda and _switch(config.cudnn_benchmark, True),
        )

    def configure_threads(self) -> None:
        """Size torch's CPU thread pool to the cores this process may use (process-wide, so only the
        entry points that own the process call it: the CLI and the training workflows)."""
        if self.device.type != "cuda" and "OMP_NUM_THREADS" not in os.environ:  # torchrun and users set it on purpose
            # OpenMP sizes its pool from the host's cores; in a container pinned to fewer, the extra
            # threads share cores and every parallel region waits on a descheduled one.
            torch.set_num_threads(usable_cpu_count())

    def apply_backend_settings(self) -> None:
        """Set the process-wide backend flags this runtime asks for (call before the first step)."""
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def describe(self) -> dict:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {
            "device": str(self.device),
            "device_name": name,
            "precision": "bf16" if self.amp_dtype is not None else "fp32",
            "channels_last": self.channels_last,
            "compile": self.compile,
            "cuda_graphs": self.cuda_graphs,
            "fused_optimizer": self.fused_optimizer,
            "cudnn_benchmark": self.cudnn_benchmark,
            "threads": torch.get_num_threads(),
        }
