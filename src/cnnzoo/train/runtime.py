"""The one place that decides device and precision; nothing else calls `.cuda()`."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnzoo.device import resolve_device
from cnnzoo.errors import CnnzooError
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


# What each compute capability (major, minor) of an NVIDIA card can run fast. bf16 tensor cores
# arrived with Ampere (8.0); Volta and Turing (7.0-7.5) have fp16 tensor cores only, where bf16 is
# emulated and slower than fp16; Pascal and older (< 7.0) have no tensor cores at all.
BF16_MIN_CAPABILITY = (8, 0)
FP16_MIN_CAPABILITY = (7, 0)
# torch.compile's GPU backend writes its kernels in Triton, which supports compute capability 7.0
# and newer; inductor refuses older cards (torch._inductor.exc.GPUTooOldForTriton, torch 2.14).
TRITON_MIN_CAPABILITY = (7, 0)
PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "Apple GPU (MPS)" if device.type == "mps" else "cpu"


def _capability_text(device: torch.device, capability: tuple[int, int]) -> str:
    return f"{device_name(device)} (compute capability {capability[0]}.{capability[1]})"


def missing_kernels(capability: tuple[int, int]) -> str | None:
    """What this torch build lacks to run a card of `capability`, or None. Wheels carry machine code for
    a list of architectures (CUDA 13's wheels start at sm_75, so a V100 or a Pascal card gets none); a
    card runs code built for its own major version and an older or equal minor, or PTX it can compile."""
    built = torch.cuda.get_arch_list()
    major, minor = capability

    def number(arch: str) -> int:  # "sm_90a" -> 90
        return int("".join(ch for ch in arch if ch.isdigit()))

    runs = [arch for arch in built if (arch.startswith("sm_") and divmod(number(arch), 10)[0] == major
                                       and divmod(number(arch), 10)[1] <= minor)
            or (arch.startswith("compute_") and number(arch) <= major * 10 + minor)]
    if not built or runs:
        return None
    return (f"this torch build has no kernels for compute capability {major}.{minor} (it has {', '.join(built)}); "
            "install a torch wheel built for an older CUDA, e.g. from download.pytorch.org/whl/cu126")


def _auto_precision(device: torch.device, capability: tuple[int, int] | None) -> tuple[str, str]:
    """The precision `--precision auto` picks on `device`, and why."""
    if device.type == "cpu":
        return "fp32", "auto on the CPU: fp32 (bf16 autocast is usually slower than fp32 there)"
    if device.type == "mps":
        return "fp32", "auto on MPS: fp32 (autocast on Apple GPUs is not measured to pay)"
    card = _capability_text(device, capability)
    if capability >= BF16_MIN_CAPABILITY:
        return "bf16", f"auto on {card}: bf16 autocast on its bf16 tensor cores"
    if capability >= FP16_MIN_CAPABILITY:
        return "fp16", (f"auto on {card}: fp16 autocast with a gradient scaler, since its tensor cores run fp16 "
                        "but not bf16")
    return "fp32", f"auto on {card}: fp32, since a card below compute capability 7.0 has no tensor cores"


def _precision_choice(config, device: torch.device, capability) -> tuple[str, str, str | None]:
    """(precision, reason, a warning line or None) for `config.precision` on `device`. An explicit
    precision is always honoured: bf16 on a card without bf16 tensor cores runs, emulated and slowly,
    so it gets a warning rather than a refusal (the numbers are right, only the speed is not)."""
    if config.precision == "auto":
        return (*_auto_precision(device, capability), None)
    reason = f"--precision {config.precision} was asked for"
    if config.precision == "bf16" and device.type == "cuda" and capability < BF16_MIN_CAPABILITY:
        auto, _ = _auto_precision(device, capability)
        warning = (f"--precision bf16 on {_capability_text(device, capability)}, which has no bf16 tensor cores: it "
                   f"runs emulated, slower than --precision {auto} (what auto picks there).")
        return config.precision, f"{reason}; {warning}", warning
    return config.precision, reason, None


def _compile_choice(config, device: torch.device, capability) -> tuple[bool, str, str | None]:
    """(compile, reason, a line to print or None); a forced compile the device cannot run is refused."""
    if device.type == "mps" and config.compile == "auto":
        return False, "auto on MPS: eager (torch.compile's Apple GPU backend is a prototype)", None
    if device.type == "cuda" and capability < TRITON_MIN_CAPABILITY and config.compile != "off":
        card = _capability_text(device, capability)
        if config.compile == "on":
            raise CnnzooError(f"--compile on cannot run on {card}: Triton, torch.compile's GPU compiler, needs "
                              "compute capability 7.0 or newer; use --compile auto or off.")
        reason = f"{card} is older than Triton (torch.compile's GPU compiler) supports (7.0)"
        # The one line a user of an old card sees: eager from the start, not a failed first step.
        return False, f"eager: {reason}", f"torch.compile is off for this run: {reason}."
    if config.compile != "auto":
        return config.compile == "on", f"--compile {config.compile} was asked for", None
    if device.type == "cuda":
        return True, f"auto on {_capability_text(device, capability)}: Triton supports 7.0 and newer", None
    return False, "auto on the CPU: eager", None


@dataclass(frozen=True)
class Runtime:
    """How a run executes: each speed trick is a separate switch so it can be measured alone."""

    device: torch.device
    amp_dtype: torch.dtype | None  # torch.float16 means fp16 autocast with a gradient scaler
    channels_last: bool
    compile: bool
    cuda_graphs: bool
    fused_optimizer: bool
    cudnn_benchmark: bool
    # The pieces the user asked for explicitly ("on", or precision "bf16"/"fp16"): these are never
    # turned off when they fail (cnnzoo.train.fastpath); "auto" ones fall back to the safer setting.
    forced: frozenset[str] = frozenset()
    # Any torch.compile backend; "inductor" is torch's compiler, the only one CUDA graphs apply to.
    compile_backend: Any = "inductor"
    # Why each piece is what it is ("precision", "compile", ...: one phrase each), for `cnnzoo doctor`,
    # `--dry-run` and config.json's "runtime"; and the lines a run prints before its first step.
    reasons: dict[str, str] = field(default_factory=dict, compare=False)
    notices: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config, device: torch.device | None = None) -> Runtime:
        """`device` overrides `config.device`: under torchrun each rank gets its own GPU."""
        device = device or resolve_device(config.device)
        cuda, mps = device.type == "cuda", device.type == "mps"
        capability = torch.cuda.get_device_capability(device) if cuda else None
        precision, precision_reason, precision_notice = _precision_choice(config, device, capability)
        compile_on, compile_reason, compile_notice = _compile_choice(config, device, capability)
        # The step captured with torch.cuda.graph is the torch.compile'd one (fastpath.compile_mode: no
        # compile, no capture), so CUDA graphs need a card Triton, torch.compile's GPU compiler, serves.
        graphs_possible = cuda and capability >= TRITON_MIN_CAPABILITY
        # Graph replay removes per-kernel launch cost, which dominates for LeNet-sized models. fp16's
        # gradient scaler reads its inf check on the host between steps, which a replay cannot.
        graphs_blocked = ("--compile is off, and the step they capture is the compiled one" if not compile_on
                          else "fp16's gradient scaler checks for overflow on the host each step"
                          if precision == "fp16" else None)
        cuda_graphs = graphs_possible and not graphs_blocked and _switch(config.cuda_graphs, True)
        channels_last = _switch(config.channels_last, cuda or (not mps and not _has_batch_norm(config.model)))
        # One multi-tensor kernel per optimizer step instead of one per parameter. torch has fused
        # kernels on MPS too, but nobody has measured them here, so auto keeps them to CUDA.
        fused_optimizer = _switch(config.fused_optimizer, cuda)
        # cuDNN times its convolution algorithms once per input shape and keeps the fastest;
        # every training step repeats the same shapes, so the one-off search pays at once.
        cudnn_benchmark = cuda and _switch(config.cudnn_benchmark, True)
        where = "CUDA" if cuda else "MPS" if mps else "the CPU"
        lacking = missing_kernels(capability) if cuda else None
        reasons = {
            "device": (f"--device {config.device}: {device}" + (f" ({device_name(device)})" if cuda or mps else "")
                       + (f"; {lacking}" if lacking else "")),
            "precision": precision_reason,
            "compile": compile_reason,
            "cuda_graphs": (f"--cuda-graphs {config.cuda_graphs} on {where}" if not cuda
                            else "off: the step they capture is torch.compile's, which this card cannot run"
                            if not graphs_possible else f"off: {graphs_blocked}" if graphs_blocked
                            else f"--cuda-graphs {config.cuda_graphs} on {where}"),
        }
        for name in SWITCHES:  # the switches not explained above: nothing but their setting decides them
            reasons.setdefault(name, f"--{name.replace('_', '-')} {getattr(config, name)} on {where}")
        forced = {name for name in SWITCHES if getattr(config, name) == "on"}
        return cls(
            forced=frozenset(forced | ({"precision"} if config.precision != "auto" and precision != "fp32" else set())),
            device=device,
            amp_dtype=PRECISION_DTYPES[precision],
            channels_last=channels_last,
            compile=compile_on,
            cuda_graphs=cuda_graphs,
            fused_optimizer=fused_optimizer,
            cudnn_benchmark=cudnn_benchmark,
            reasons=reasons,
            notices=tuple(line for line in (lacking and f"{lacking}.", precision_notice, compile_notice) if line),
        )

    @property
    def grad_scaler(self) -> bool:
        """Whether the training step scales the loss: fp16's narrow range underflows small gradients."""
        return self.amp_dtype == torch.float16

    def announce(self, file=None) -> None:
        """Print, once at the start of a run, the lines that say what this device changed in the run
        (an eager path on an old card, an emulated precision); entry points call it, like configure_threads."""
        for line in self.notices:
            print(f"cnnzoo: {line}", file=file or sys.stderr, flush=True)

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
        capability = torch.cuda.get_device_capability(self.device) if self.device.type == "cuda" else None
        return {
            "device": str(self.device),
            "device_name": device_name(self.device),
            "compute_capability": None if capability is None else f"{capability[0]}.{capability[1]}",
            "precision": PRECISION_NAMES[self.amp_dtype],
            "grad_scaler": self.grad_scaler,
            **{name: getattr(self, name) for name in SWITCHES},
            "threads": torch.get_num_threads(),
            "reasons": dict(self.reasons),
        }
