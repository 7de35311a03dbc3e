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

The first GUARDED_CALLS steps of each batch shape run guarded: a failure there turns the next piece
off (captured → compiled → eager, then autocast, layout, fused kernels), says so in one line and runs
the step again from the state before it (cnnzoo.train.fallback).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.train.fallback import FallbackChain, missing_compile_toolchain
from cnnzoo.train.optim import set_lr
from cnnzoo.train.runtime import Runtime

T = TypeVar("T")

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
              and not runtime.grad_scaler)
    return "cuda-graph" if graphs else "default"


class TrainStep(FallbackChain):
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
        device, plan, self.epoch = self.runtime.device, self.batches.epoch_plan(epoch), epoch
        self.batches.set_epoch(epoch)
        if self.graphs:  # a captured graph reads and writes these very tensors: refill them in place
            for old, new in zip(self.plan, plan):
                if old is not None:
                    old.copy_(new)
            self.lr_table.copy_(torch.tensor(lrs))
            self.losses.zero_(), self.correct.zero_(), self.cursor.zero_()
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

