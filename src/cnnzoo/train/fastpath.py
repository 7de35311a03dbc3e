"""The training step (`TrainStep._body`) and how it runs: captured → compiled → eager.

The whole step, from the batch of the epoch's plan to the sums of loss and correct predictions, is
one function: on CUDA captured whole with `torch.cuda.graph` (one replay per step; the learning rate
and the batch read through a device step counter), with compile on `torch.compile`d whole (a tensor
learning rate: a schedule recompiles nothing), otherwise run eagerly, op for op as cnnzoo always ran
it. Capture, not torch.compile's reduce-overhead mode, by measurement: that ran forward and backward as
two graph-tree calls with their guards around an eager optimizer, 2.2 ms per LeNet step on the H200
for ~0.1 ms of kernels (issue 24). The first steps of each batch shape may fall back (cnnzoo.train.fallback).
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from cnnzoo.train.config import CUDA_GRAPHS_MAX_PARAMS
from cnnzoo.train.fallback import FallbackChain
from cnnzoo.train.optim import set_lr
from cnnzoo.train.runtime import Runtime

T = TypeVar("T")

# Compiling, warming up and capturing happen in the first calls of each shape; later steps are guarded no more.
GUARDED_CALLS = 3
WARMUP_STEPS = 2  # eager steps before a capture, on a side stream (allocator and cuDNN settle, as torch's notes ask)


def compile_mode(runtime: Runtime, num_params: int, distributed: bool) -> str | None:
    """"cuda-graph" (the step captured whole), "default" (torch.compile) or None (eager). Under DDP the
    all-reduce hooks split the step, and fp16's scaler reads its inf check on the host: no capture there."""
    if not runtime.compile:
        return None
    graphs = (runtime.cuda_graphs and num_params < CUDA_GRAPHS_MAX_PARAMS and not distributed
              and not runtime.grad_scaler)
    return "cuda-graph" if graphs else "default"


class TrainStep(FallbackChain):
    """The step of one `fit` (or `lr_find`) over `batches`, with the epoch's losses and correct count on
    the device. `wrap`: what the step calls around the model (DDP under torchrun)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime, batches, *,
                 loss_fn: Callable, grad_clip: float | None = None, scaler: torch.amp.GradScaler | None = None,
                 distributed: bool = False, wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
                 run_dir=None, fallbacks: list[dict[str, Any]] | None = None) -> None:
        self.model, self.optimizer, self.runtime, self.batches = model, optimizer, runtime, batches
        self.loss_fn, self.grad_clip, self.distributed, self.wrap = loss_fn, grad_clip, distributed, wrap
        # Only fp16 enables one; a disabled scaler passes the loss and the step through unchanged.
        self.scaler = scaler or torch.amp.GradScaler(runtime.device.type, enabled=False)
        self.run_dir, self.fallbacks = run_dir, [] if fallbacks is None else fallbacks  # fit's: a resume keeps them
        self.num_params, self.sizes = sum(p.numel() for p in model.parameters()), batches.batch_sizes()
        self._check_toolchain()
        self._build()

    @property
    def compile_mode(self) -> str | None:
        return compile_mode(self.runtime, self.num_params, self.distributed)

    def _build(self) -> None:
        mode, backend, device = self.compile_mode, self.runtime.compile_backend, self.runtime.device
        self.eval_model, self.train_model, self.run_body = self.model, self.wrap(self.model), self._body
        self.graph, self.calls, self.lr = None, Counter(), None
        if mode is not None:
            # Each compile starts afresh: dynamo's cache is shared by every model of a class, and after
            # a fallback nothing of the failed graphs may linger. Static shapes: a run sees a handful.
            torch.compiler.reset()
            self.eval_model = torch.compile(self.model, backend=backend, dynamic=False)
            self.run_body = torch.compile(self._body, backend=backend, dynamic=False)
            self.lr = torch.zeros((), device=device)  # a schedule changes its value, not the compiled code
        for group in self.optimizer.param_groups:
            group["lr"] = float(group["lr"]) if mode is None else torch.tensor(float(group["lr"]), device=device)
            if mode == "cuda-graph" and "capturable" in group:  # Adam's step count stays on the device
                group["capturable"] = True
                for param in group["params"]:
                    if torch.is_tensor(step := self.optimizer.state.get(param, {}).get("step")):
                        self.optimizer.state[param]["step"] = step.to(param.device)

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
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"].copy_(self.lr * group.get("lr_scale", 1.0))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def begin_epoch(self, epoch: int, lrs: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw epoch `epoch`'s plan; returns its (per-step losses, correct count) on the device, filled by the steps."""
        self.epoch, device = epoch, self.runtime.device
        fresh = (*self.batches.epoch_plan(epoch), torch.tensor(lrs, device=device),
                 torch.zeros(len(self.sizes), device=device), torch.zeros((), dtype=torch.long, device=device),
                 torch.zeros(1, dtype=torch.long, device=device))  # the last: the captured step's step counter
        if self.graph is not None:  # the captured graph reads and writes these very tensors: refill them in place
            for old, new in zip(self.tensors, fresh):
                if old is not None:
                    old.copy_(new)
        else:
            self.tensors = fresh
        *self.plan, self.lr_table, self.losses, self.correct, self.cursor = self.tensors
        return self.losses, self.correct

    def __call__(self, b: int, lr: float) -> None:
        """Step `b` of the epoch at learning rate `lr`."""
        shape = self.sizes[b]
        if self.distributed or self.calls[shape] >= GUARDED_CALLS or not self._enabled_pieces():
            return self._run(b, lr)
        self.calls[shape] += 1
        self._retrying(lambda: self._run(b, lr), self.epoch, f"step {b + 1}", self._snapshot())

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
        if self.graph is not None:
            return self.graph.replay()
        self.cursor.fill_(b)
        if self.calls[self.sizes[0]] <= WARMUP_STEPS:
            side, main = torch.cuda.Stream(self.runtime.device), torch.cuda.current_stream(self.runtime.device)
            side.wait_stream(main)
            with torch.cuda.stream(side):
                self._graph_step()
            return main.wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._graph_step()
        self.graph.replay()

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
        return self._retrying(lambda: run(self.eval_model, self.runtime), epoch, "evaluation")

    @contextmanager
    def float_lr(self):
        """Plain float learning rates while a checkpoint is written (its metadata is JSON)."""
        rates = [group["lr"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = float(group["lr"])
        try:
            yield
        finally:
            for group, lr in zip(self.optimizer.param_groups, rates):
                group["lr"] = lr
