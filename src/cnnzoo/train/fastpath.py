"""The training step (`TrainStep._body`, one screen) and how it runs: captured → compiled → eager.

The whole step -- the batch from the epoch's plan, augmentation, resize and normalization, forward,
loss, backward, the update with the learning rate and the accumulation of loss and correct
predictions -- is one function. On CUDA it is captured whole with `torch.cuda.graph` (the optimizer
capturable, the learning rate and the batch read from device tensors through a device step
counter), so a step is one replay and no host work; with compile on it is `torch.compile`d whole
(the optimizer included, its learning rate a tensor so a schedule recompiles nothing); otherwise it
runs eagerly, op for op the step cnnzoo always ran. Why capture rather than torch.compile's own
CUDA graphs: reduce-overhead recorded forward and backward as two graph-tree calls, each with its
guards and tree checks, around an eager optimizer (2.2 ms per LeNet step on the H200 for ~0.1 ms of
kernels, issue 24); one capture of everything leaves one launch.

A fast-path piece may fail on a user's machine (no compiler, an op a capture refuses, a kernel a GPU
lacks). Failures surface at the first steps of each batch shape; the step then turns the next piece
off (FALLBACK_ORDER), says so in one line, puts model, optimizer, scaler and RNG back and runs the
step again. A piece the user asked for explicitly (`on`, `--precision bf16`) is never turned off.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import sys
import traceback
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.train.optim import load_optimizer_state, set_lr
from cnnzoo.train.runtime import Runtime

T = TypeVar("T")

# Turned off in this order: the riskiest and least essential first; autocast changes the numbers most.
FALLBACK_ORDER = ("cuda_graphs", "compile", "precision", "channels_last", "fused_optimizer", "cudnn_benchmark")
PIECE_NAMES = {"cuda_graphs": "the captured step (CUDA graph)", "compile": "torch.compile", "precision": "autocast",
               "channels_last": "channels_last", "fused_optimizer": "the fused optimizer",
               "cudnn_benchmark": "cudnn.benchmark"}
# Compiling, warming up and capturing happen in the first calls of each shape; later steps are guarded no more.
GUARDED_CALLS = 3
WARMUP_STEPS = 2  # eager steps before a capture, on a side stream (allocator and cuDNN settle, as torch's notes ask)
# Above this size the kernels, not their launches, dominate: a captured graph only costs memory.
CUDA_GRAPHS_MAX_PARAMS = 5_000_000


def compile_mode(runtime: Runtime, num_params: int, distributed: bool) -> str | None:
    """"cuda-graph" (the step captured whole), "default" (torch.compile) or None (eager). Under DDP the
    all-reduce hooks split the step, and fp16's scaler reads its inf check on the host: no capture there."""
    if not runtime.compile:
        return None
    graphs = (runtime.cuda_graphs and num_params < CUDA_GRAPHS_MAX_PARAMS and not distributed
              and runtime.amp_dtype != torch.float16)
    return "cuda-graph" if graphs else "default"


def missing_compile_toolchain(device: torch.device, backend: Any = "inductor") -> str | None:
    """What inductor needs on `device` and this machine lacks (Triton and a C compiler for CUDA, a C++
    compiler for the CPU), or None: without them the failure would come deep inside the first step."""
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
    """'Type: the first informative line' of an error (dynamo's "... raised:" header lines skipped)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = next((line for line in lines if not line.endswith("raised:")), lines[0] if lines else "")
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class TrainStep:
    """The step of one `fit` (or `lr_find`) over `batches`, its per-epoch loss and correct counts on the
    device, and the fallback chain. `wrap`: what the step calls around the model (DDP under torchrun);
    with several processes nothing falls back (every rank would have to agree on the failed step)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime, batches, *,
                 loss_fn: Callable, grad_clip: float | None = None, scaler: torch.amp.GradScaler | None = None,
                 distributed: bool = False, wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
                 run_dir=None, fallbacks: list[dict[str, Any]] | None = None) -> None:
        self.model, self.optimizer, self.batches, self.loss_fn, self.grad_clip = model, optimizer, batches, loss_fn, grad_clip
        self.scaler, self.fp16 = scaler, scaler is not None and scaler.is_enabled()
        self.distributed, self.wrap, self.run_dir = distributed, wrap, run_dir
        self.fallbacks = [] if fallbacks is None else fallbacks  # fit's History list: a resume keeps the record
        self.num_params, self.runtime = sum(p.numel() for p in model.parameters()), runtime
        self.sizes = batches.batch_sizes()
        if runtime.compile and (missing := missing_compile_toolchain(runtime.device, runtime.compile_backend)):
            if "compile" in runtime.forced:
                raise CnnzooError(f"--compile on was asked for but {missing}; install it, or use --compile auto "
                                  "or off to train without compiling.")
            self.runtime = dataclasses.replace(runtime, compile=False, cuda_graphs=False)
            self._record("compile", None, missing, "before the first step", f"torch.compile is off for this run: {missing}.")
        self._build()

    @property
    def compile_mode(self) -> str | None:
        return compile_mode(self.runtime, self.num_params, self.distributed)

    def _build(self) -> None:
        mode, backend = self.compile_mode, self.runtime.compile_backend
        self.eval_model = self.model
        if mode is not None:
            # Each compile starts afresh: dynamo's cache is shared by every model of a class, and after
            # a fallback nothing of the failed graphs may linger. Static shapes: a run sees a handful.
            torch.compiler.reset()
            self.eval_model = torch.compile(self.model, backend=backend, dynamic=False)
        self.train_model = self.wrap(self.model)
        body = self._body if mode is None else torch.compile(self._body, backend=backend, dynamic=False)
        self.run_body, self.graphs, self.calls = body, {}, Counter()
        self.lr = None
        if mode is not None:  # a tensor learning rate: a schedule changes its value, not the compiled code
            self.lr = torch.zeros((), device=self.runtime.device)
            for group in self.optimizer.param_groups:
                group["lr"] = torch.tensor(float(group["lr"]), device=self.runtime.device)
                if mode == "cuda-graph" and "capturable" in group:  # Adam's step count stays on the device
                    group["capturable"] = True
                    for param in group["params"]:
                        if torch.is_tensor(step := self.optimizer.state.get(param, {}).get("step")):
                            self.optimizer.state[param]["step"] = step.to(param.device)
        else:
            self._float_lr()

    def _body(self, idx: torch.Tensor, *draws: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training step."""
        self.optimizer.zero_grad(set_to_none=True)
        x, y = self.batches.make_batch(idx, *draws)
        x = x.contiguous(memory_format=self.runtime.memory_format)  # a no-op unless channels_last fell back
        with self.runtime.autocast():
            logits = self.train_model(x)
        loss = self.loss_fn(logits.float(), y)
        # fp16 (PyTorch's AMP recipe): backward from the scaled loss so small gradients do not flush to
        # zero, clip the true gradients, and let the scaler skip a step whose gradients overflowed.
        (self.scaler.scale(loss) if self.fp16 else loss).backward()
        if self.grad_clip is not None:
            if self.fp16:
                self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"].copy_(self.lr * group.get("lr_scale", 1.0))
        if self.fp16:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def begin_epoch(self, epoch: int, lrs: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw epoch `epoch`'s plan; returns its (per-step losses, correct count) on the device, filled by the steps."""
        device, plan, self.epoch = self.runtime.device, self.batches._plan(epoch), epoch
        self.batches.set_epoch(epoch)
        if self.graphs:  # a captured graph reads and writes these very tensors: refill them in place
            for old, new in zip(self.plan, plan):
                if old is not None:
                    old.copy_(new)
            self.lr_table.copy_(torch.tensor(lrs))
            self.losses.zero_(), self.correct.zero_()
            return self.losses, self.correct
        self.plan, self.lr_table = plan, torch.tensor(lrs, device=device)
        self.losses = torch.zeros(len(self.sizes), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.cursor = torch.zeros(1, dtype=torch.long, device=device)  # the captured step's step counter
        return self.losses, self.correct

    def __call__(self, b: int, lr: float) -> None:
        """Step `b` of the epoch at learning rate `lr`."""
        shape = self.sizes[b]
        if self.distributed or self.calls[shape] >= GUARDED_CALLS or not self._enabled_pieces():
            return self._run(b, lr)
        self.calls[shape] += 1
        before = self._snapshot() if self._may_turn_off() else None
        while True:
            try:
                return self._run(b, lr)
            except torch.OutOfMemoryError:
                raise  # not a fast-path failure: the caller explains the batch size
            except Exception as error:
                self._fall_back(error, self.epoch, f"step {b + 1}")
                self._restore(before)

    def _run(self, b: int, lr: float) -> None:
        if self.compile_mode == "cuda-graph" and self.sizes[b] == self.sizes[0]:
            return self._captured(b)
        if self.lr is None:
            set_lr(self.optimizer, lr)
        else:
            self.lr.fill_(lr)
        self.losses[b], correct = self.run_body(*self.batches.batch_draws(self.plan, b))
        self.correct += correct

    def _captured(self, b: int) -> None:
        # torch's CUDA notes, "whole network capture": warm up on a side stream, capture once, replay.
        full = self.sizes[0]
        if (graph := self.graphs.get(full)) is not None:
            return graph.replay()
        self.cursor.fill_(b)
        side = torch.cuda.Stream(self.runtime.device)
        side.wait_stream(torch.cuda.current_stream(self.runtime.device))
        if self.calls[full] <= WARMUP_STEPS:
            with torch.cuda.stream(side):
                self._graph_step()
            return torch.cuda.current_stream(self.runtime.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._graph_step()
        self.graphs[full] = graph
        graph.replay()

    def _graph_step(self) -> None:
        """The step for the captured graph: batch, rate and result slots picked by the device counter."""
        i, full = self.cursor, self.sizes[0]
        draws = [None if t is None else t[: full * (len(t) // full)].view(-1, full, *t.shape[1:]).index_select(0, i)[0]
                 for t in self.plan]
        self.lr.copy_(self.lr_table.index_select(0, i)[0])
        loss, correct = self.run_body(*draws)
        self.losses.index_copy_(0, i, loss.view(1))
        self.correct.add_(correct)
        self.cursor.add_(1)

    def evaluate(self, run: Callable[[nn.Module, Runtime], T], *, epoch: int) -> T:
        """`run(model, runtime)`, again with the next safer setting if it fails (evaluation changes no state)."""
        while True:
            try:
                return run(self.eval_model, self.runtime)
            except torch.OutOfMemoryError:
                raise
            except Exception as error:
                if self.distributed or not self._enabled_pieces():
                    raise
                self._fall_back(error, epoch, "evaluation")

    @contextmanager
    def float_lr(self):
        """Plain float learning rates while a checkpoint is written (its metadata is JSON)."""
        tensors = [group["lr"] for group in self.optimizer.param_groups]
        self._float_lr()
        try:
            yield
        finally:
            for group, lr in zip(self.optimizer.param_groups, tensors):
                group["lr"] = lr

    def _float_lr(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(group["lr"])

    def _enabled_pieces(self) -> list[str]:
        runtime = self.runtime
        on = {"cuda_graphs": self.compile_mode == "cuda-graph", "compile": runtime.compile,
              "precision": runtime.amp_dtype is not None, "channels_last": runtime.channels_last,
              "fused_optimizer": runtime.fused_optimizer and any(g.get("fused") for g in self.optimizer.param_groups),
              "cudnn_benchmark": runtime.cudnn_benchmark}
        return [piece for piece in FALLBACK_ORDER if on[piece]]

    def _may_turn_off(self) -> bool:
        return any(piece not in self.runtime.forced for piece in self._enabled_pieces())

    def _fall_back(self, error: Exception, epoch: int, where: str) -> None:
        """Turn off the next piece that may be turned off; when none is left, raise (the error itself,
        or one naming the pieces the user asked for)."""
        enabled = self._enabled_pieces()
        allowed = [piece for piece in enabled if piece not in self.runtime.forced]
        if not allowed:
            forced = ", ".join(PIECE_NAMES[p] for p in enabled if p in self.runtime.forced)
            if not forced:
                raise error
            raise CnnzooError(f"Training failed at epoch {epoch + 1}, {where} with {forced} on as asked "
                              f"({first_line(error)}); set it to auto to let cnnzoo fall back to a safer setting, "
                              "or turn it off.") from error
        # A failure inside the fused kernel is the optimizer's: nothing compiled runs there.
        in_fused = any(frame.name.startswith("_fused") for frame in traceback.extract_tb(error.__traceback__))
        piece = "fused_optimizer" if in_fused and "fused_optimizer" in allowed else allowed[0]
        self.runtime = without(self.runtime, piece)
        if piece == "channels_last":  # the same Parameters, contiguous: the optimizer still holds them
            self.model.to(memory_format=torch.contiguous_format)
        elif piece == "fused_optimizer":
            for group in self.optimizer.param_groups:
                group["fused"] = False
        elif piece == "cudnn_benchmark":
            self.runtime.apply_backend_settings()
        self._build()
        where = f"at epoch {epoch + 1}, {where}"
        self._record(piece, epoch, first_line(error), where,
                     f"{PIECE_NAMES[piece]} failed {where} ({first_line(error)}); continuing from there with it off.")

    def _record(self, piece: str, epoch: int | None, error: str, where: str, message: str) -> None:
        self.fallbacks.append({"piece": piece, "epoch": None if epoch is None else epoch + 1, "where": where,
                               "error": error})
        print(f"cnnzoo: {message}", file=sys.stderr, flush=True)
        if self.run_dir is not None and self.run_dir.config_path.is_file():  # config.json says what ran
            values = self.run_dir.read_json(self.run_dir.CONFIG)
            self.run_dir.write_json(self.run_dir.CONFIG, {**values, "runtime": {**values.get("runtime", {}),
                                                                                   **self.describe()}})

    def describe(self) -> dict[str, Any]:
        """What runs now: the runtime's switches, the compile mode and every fallback so far."""
        return {**self.runtime.describe(), "compile_mode": self.compile_mode, "fallbacks": list(self.fallbacks)}

    def _snapshot(self) -> dict[str, Any]:
        # A failed step may have run part of the work: batch norm's statistics, optimizer state, random draws.
        cuda = self.runtime.device.type == "cuda"
        return {"model": _cloned(self.model.state_dict()), "optimizer": _cloned(self.optimizer.state_dict()),
                "scaler": self.scaler.state_dict() if self.fp16 else None, "losses": self.losses.clone(), "correct": self.correct.clone(),
                "cpu_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.runtime.device) if cuda else None}

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.model.load_state_dict(snapshot["model"])
        lrs = [group["lr"] for group in self.optimizer.param_groups]  # the rebuilt step's kind of rate
        load_optimizer_state(self.optimizer, _cloned(snapshot["optimizer"]))
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        if snapshot["scaler"]:
            self.scaler.load_state_dict(snapshot["scaler"])
        self.losses.copy_(snapshot["losses"])
        self.correct.copy_(snapshot["correct"])
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


_OFF = {"cuda_graphs": {"cuda_graphs": False}, "compile": {"compile": False, "cuda_graphs": False},
        "precision": {"amp_dtype": None}, "channels_last": {"channels_last": False},
        "fused_optimizer": {"fused_optimizer": False}, "cudnn_benchmark": {"cudnn_benchmark": False}}


def without(runtime: Runtime, piece: str) -> Runtime:
    """`runtime` with one fast-path piece (a FALLBACK_ORDER name) turned off."""
    return dataclasses.replace(runtime, **_OFF[piece])


def runtime_after(runtime: Runtime, fallbacks: list[dict[str, Any]]) -> Runtime:
    """`runtime` without the pieces a run's fallbacks turned off, for what runs after `fit` (the final
    evaluation of the run directory), which must not meet the same failure again."""
    for fallback in fallbacks:
        runtime = without(runtime, fallback["piece"])
    return runtime
