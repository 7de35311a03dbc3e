"""The training step on the fast path, and what happens when a piece of that path fails.

The fast path (CUDA graphs, torch.compile, bf16 autocast, channels_last, the fused optimizer,
cudnn.benchmark) is code a user's machine may not run: a compiler missing, a graph capture that
an op refuses, a kernel a GPU lacks. A failure surfaces lazily, at the first step or at the first
step of a new shape (the last partial batch, evaluation). `FastPath` then turns the next piece off,
says so in one line, puts the model, optimizer and RNG back as they were before the failed step,
and runs that step again, so the run continues with the numbers the safer setting gives. A piece
the user asked for explicitly (`on`, or `--precision bf16`) is never turned off: the run stops.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import sys
from collections import Counter
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.optim import load_optimizer_state

T = TypeVar("T")

# The order in which pieces are turned off: the riskiest and least essential first. CUDA graphs
# need compile, so they go before it; bf16 changes the numbers most, so it goes only after both.
FALLBACK_ORDER = ("cuda_graphs", "compile", "precision", "channels_last", "fused_optimizer", "cudnn_benchmark")
PIECE_NAMES = {
    "cuda_graphs": "CUDA graphs", "compile": "torch.compile", "precision": "bf16 autocast",
    "channels_last": "channels_last", "fused_optimizer": "the fused optimizer", "cudnn_benchmark": "cudnn.benchmark",
}
# Compilation and CUDA-graph recording happen in the first calls of each shape (cudagraph trees:
# warm-up, recording, first replay); after that a step runs code that has already run once.
GUARDED_CALLS = 3
# Models above this size are bound by their kernels, not by launching them: CUDA graphs only cost memory.
CUDA_GRAPHS_MAX_PARAMS = 5_000_000


def compile_mode(runtime: Runtime, num_params: int, distributed: bool) -> str | None:
    """The torch.compile mode this run uses, or None when it runs eagerly.

    CUDA graphs ("reduce-overhead") pay when kernel launches dominate, i.e. for small models. Under DDP
    the all-reduce hooks and SyncBatchNorm's collectives split the graph, so no CUDA graphs there. The
    default mode, not max-autotune: its template search costs minutes per shape, and these convolutions
    go to cuDNN either way; compiling buys the fused elementwise work around them.
    """
    if not runtime.compile:
        return None
    graphs = runtime.cuda_graphs and num_params < CUDA_GRAPHS_MAX_PARAMS and not distributed
    return "reduce-overhead" if graphs else "default"


def missing_compile_toolchain(device: torch.device, backend: Any = "inductor") -> str | None:
    """What torch.compile's inductor backend would need on `device` and this machine lacks, or None.

    Inductor writes C++ for the CPU and Triton kernels for CUDA; Triton in turn builds its kernel
    launcher with the system C compiler. Without them the failure comes deep inside the first step.
    """
    if backend != "inductor":
        return None
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "Triton is not installed (inductor writes CUDA kernels in Triton)"
        if not _find_program(os.environ.get("CC"), "gcc", "cc", "clang"):
            return "no C compiler (gcc, cc or clang) was found on PATH, which Triton needs to build its kernel launcher"
        return None
    from torch._inductor import config as inductor_config

    configured = inductor_config.cpp.cxx
    candidates = [os.environ.get("CXX"), *(configured if isinstance(configured, (list, tuple)) else [configured])]
    if not _find_program(*candidates, "g++", "c++", "clang++"):
        return "no C++ compiler (g++, c++ or clang++) was found on PATH, which inductor needs for CPU code"
    return None


def _find_program(*names: str | None) -> str | None:
    return next((path for name in names if name and (path := shutil.which(name))), None)


def first_line(error: BaseException) -> str:
    """'Type: the first informative line' of an error, for a one-line report.

    Dynamo wraps the real error under a header line ("backend='inductor' raised:"), so such headers
    are skipped."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = next((line for line in lines if not line.endswith("raised:")), lines[0] if lines else "")
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _compile(model: nn.Module, mode: str | None, backend: Any) -> nn.Module:
    if mode is None:
        return model
    # Each compile starts afresh: dynamo's per-function cache (8 entries) is shared by every model of
    # a class, so fine-tuning's second phase or `compare`'s third LeNet would otherwise run eagerly;
    # and after a fallback nothing of the failed graphs (or their CUDA-graph pools) may linger.
    torch.compiler.reset()
    # A run sees a handful of batch shapes (full and last batch, train and eval): static kernels for
    # each beat one dynamic-shape graph, and CUDA graphs are recorded per shape anyway.
    if backend == "inductor":
        return torch.compile(model, mode=mode, dynamic=False)
    return torch.compile(model, backend=backend, dynamic=False)


class FastPath:
    """The training step and the evaluation model of one `fit`, with the fallback chain.

    `wrap` puts the (compiled) model into what the step calls (DDP under torchrun); `run_dir`, if given,
    has its config.json's "runtime" rewritten at each fallback. With several
    processes nothing falls back: every rank would have to agree on the failed step, and a rank
    that stops inside a collective leaves the others waiting, so a failure ends the run there.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime, *,
                 loss_fn: Callable, grad_clip: float | None = None, distributed: bool = False,
                 wrap: Callable[[nn.Module], nn.Module] = lambda m: m, run_dir=None,
                 fallbacks: list[dict[str, Any]] | None = None) -> None:
        self.model, self.optimizer, self.loss_fn, self.grad_clip = model, optimizer, loss_fn, grad_clip
        self.distributed, self.wrap, self.run_dir = distributed, wrap, run_dir
        # Appended to in place: fit passes its History's list, so a resumed run keeps its record.
        self.fallbacks = [] if fallbacks is None else fallbacks
        self.num_params = sum(p.numel() for p in model.parameters())
        self.runtime = runtime
        if runtime.compile and (missing := missing_compile_toolchain(runtime.device, runtime.compile_backend)):
            if "compile" in runtime.forced:
                raise CnnzooError(f"--compile on was asked for but {missing}; install it, or use --compile auto "
                                  "or off to train without compiling.")
            self.runtime = without(runtime, "compile")
            self._record("compile", None, missing, "before the first step",
                         f"torch.compile is off for this run: {missing}.")
        self._build()

    @property
    def compile_mode(self) -> str | None:
        return compile_mode(self.runtime, self.num_params, self.distributed)

    @property
    def eval_model(self) -> nn.Module:
        """The model evaluation should call: the compiled one when compiling (not the DDP wrapper)."""
        return self.compiled

    def _build(self) -> None:
        self.compiled = _compile(self.model, self.compile_mode, self.runtime.compile_backend)
        self.train_model = self.wrap(self.compiled)
        self.calls: Counter = Counter()  # guarded calls so far per training batch shape

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.phase = "forward and backward"
        x = x.contiguous(memory_format=self.runtime.memory_format)  # a no-op unless channels_last fell back
        with self.runtime.autocast():
            logits = self.train_model(x)
        loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.phase = "optimizer step"
        self.optimizer.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def train_step(self, x: torch.Tensor, y: torch.Tensor, *, epoch: int,
                   step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on (x, y); returns (loss, correct predictions), both on the device.

        `epoch` and `step` (0-based) only name the step in a fallback's message."""
        shape = tuple(x.shape)
        if self.distributed or self.calls[shape] >= GUARDED_CALLS:
            return self._step(x, y)
        self.calls[shape] += 1
        if not self._enabled_pieces():  # plain eager fp32: nothing to fall back from
            return self._step(x, y)
        # Without a piece that may be turned off, a failure only needs its explanation, not a retry.
        before = self._snapshot() if self._may_turn_off() else None
        while True:
            try:
                return self._step(x, y)
            except torch.OutOfMemoryError:
                raise  # not a fast-path failure: the caller explains the batch size
            except Exception as error:
                self._fall_back(error, epoch, f"step {step + 1}", in_optimizer=self.phase == "optimizer step")
                self._restore(before)
                self.calls[shape] += 1

    def evaluate(self, run: Callable[[nn.Module, Runtime], T], *, epoch: int) -> T:
        """`run(model, runtime)`, again with the next safer setting if it fails. Evaluation changes no
        state of the model (eval mode, no gradients), so it is simply run again."""
        while True:
            try:
                return run(self.eval_model, self.runtime)
            except torch.OutOfMemoryError:
                raise
            except Exception as error:
                if self.distributed or not self._enabled_pieces():
                    raise
                self._fall_back(error, epoch, "evaluation", in_optimizer=False)

    def _enabled_pieces(self) -> list[str]:
        runtime = self.runtime
        on = {"cuda_graphs": self.compile_mode == "reduce-overhead", "compile": runtime.compile,
              "precision": runtime.amp_dtype is not None, "channels_last": runtime.channels_last,
              "fused_optimizer": runtime.fused_optimizer and any(g.get("fused") for g in self.optimizer.param_groups),
              "cudnn_benchmark": runtime.cudnn_benchmark}
        return [piece for piece in FALLBACK_ORDER if on[piece]]

    def _may_turn_off(self) -> bool:
        return any(piece not in self.runtime.forced for piece in self._enabled_pieces())

    def _fall_back(self, error: Exception, epoch: int, where: str, in_optimizer: bool) -> None:
        """Turn off the next piece that may be turned off; when none is left, raise: the error itself, or
        one that names the pieces the user asked for if those are still on."""
        enabled = self._enabled_pieces()
        allowed = [piece for piece in enabled if piece not in self.runtime.forced]
        if not allowed:
            forced = [piece for piece in enabled if piece in self.runtime.forced]
            if not forced:
                raise error
            names = ", ".join(PIECE_NAMES[p] for p in forced)
            raise CnnzooError(f"Training failed at epoch {epoch + 1}, {where} with {names} on as asked "
                              f"({first_line(error)}); set it to auto to let cnnzoo fall back to a safer setting, "
                              "or turn it off.") from error
        # A failure inside optimizer.step() is the optimizer's kernel: nothing compiled runs there.
        piece = "fused_optimizer" if in_optimizer and "fused_optimizer" in allowed else allowed[0]
        self._turn_off(piece)
        where = f"at epoch {epoch + 1}, {where}"
        self._record(piece, epoch, first_line(error), where,
                     f"{PIECE_NAMES[piece]} failed {where} ({first_line(error)}); continuing from there with it off.")

    def _record(self, piece: str, epoch: int | None, error: str, where: str, message: str) -> None:
        self.fallbacks.append({"piece": piece, "epoch": None if epoch is None else epoch + 1, "where": where,
                               "error": error})
        print(f"cnnzoo: {message}", file=sys.stderr, flush=True)
        # config.json says what actually ran, also if the run is cut short (`fit`'s caller may have written none).
        if self.run_dir is not None and self.run_dir.config_path.is_file():
            values = self.run_dir.read_json(self.run_dir.CONFIG)
            self.run_dir.write_json(self.run_dir.CONFIG, {**values, "runtime": {**values.get("runtime", {}),
                                                                                   **self.describe()}})

    def describe(self) -> dict[str, Any]:
        """What runs now: the runtime's switches, the compile mode and every fallback so far."""
        return {**self.runtime.describe(), "compile_mode": self.compile_mode, "fallbacks": list(self.fallbacks)}

    def _turn_off(self, piece: str) -> None:
        self.runtime = without(self.runtime, piece)
        if piece == "channels_last":
            # The same Parameter objects get contiguous data, so the optimizer still holds them;
            # its state takes the new layout when the snapshot is restored (load_optimizer_state).
            self.model.to(memory_format=torch.contiguous_format)
        elif piece == "fused_optimizer":
            for group in self.optimizer.param_groups:
                group["fused"] = False
        elif piece == "cudnn_benchmark":
            self.runtime.apply_backend_settings()
        self._build()

    def _snapshot(self) -> dict[str, Any]:
        # A failed step may have run part of the work: batch norm's running statistics updated in the
        # forward, the optimizer's state created before its kernel failed, random numbers drawn.
        cuda = self.runtime.device.type == "cuda"
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": _cloned(self.optimizer.state_dict()),
            "cpu_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.runtime.device) if cuda else None,
        }

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.model.load_state_dict(snapshot["model"])
        load_optimizer_state(self.optimizer, _cloned(snapshot["optimizer"]))
        torch.set_rng_state(snapshot["cpu_rng"])
        if snapshot["cuda_rng"] is not None:
            torch.cuda.set_rng_state(snapshot["cuda_rng"], self.runtime.device)
        self.optimizer.zero_grad(set_to_none=True)


def _cloned(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cloned(v) for v in value]
    return value


_OFF = {
    "cuda_graphs": {"cuda_graphs": False}, "compile": {"compile": False, "cuda_graphs": False},
    "precision": {"amp_dtype": None}, "channels_last": {"channels_last": False},
    "fused_optimizer": {"fused_optimizer": False}, "cudnn_benchmark": {"cudnn_benchmark": False},
}


def without(runtime: Runtime, piece: str) -> Runtime:
    """`runtime` with one fast-path piece (a FALLBACK_ORDER name) turned off."""
    return dataclasses.replace(runtime, **_OFF[piece])


def runtime_after(runtime: Runtime, fallbacks: list[dict[str, Any]]) -> Runtime:
    """`runtime` without the pieces a run's fallbacks turned off, for what runs after `fit` (the final
    evaluation of the run directory), which must not meet the same failure again."""
    for fallback in fallbacks:
        runtime = without(runtime, fallback["piece"])
    return runtime
