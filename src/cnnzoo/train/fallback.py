"""What a training step does when a piece of the fast path fails on a user's machine.

A compiler missing, a graph capture an op refuses, a kernel a GPU lacks: a failure surfaces at the
first steps of each batch shape or at evaluation. The step (cnnzoo.train.fastpath.TrainStep, a
FallbackChain) then turns the next piece off in FAST_PATH's order (train/config.py), says so in one line, puts back the
state from before the failed step and runs it again. A piece the user asked for explicitly (`on`,
`--precision bf16`) is never turned off: the run stops with one sentence. With several processes
nothing falls back (every rank would have to agree on the failed step).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import shutil
import sys
import traceback
from typing import Any, Callable, TypeVar

import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.train.checkpoint import restore_rng_state, rng_state
from cnnzoo.train.config import FAST_PATH, FAST_PATH_PIECES
from cnnzoo.train.optim import load_optimizer_state
from cnnzoo.train.runtime import PRECISION_NAMES, Runtime

T = TypeVar("T")



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


class FallbackChain:
    """The fallback half of TrainStep: it reads the step's model, optimizer, scaler, runtime and
    epoch sums, and calls its `_build` after turning a piece off."""

    def _check_toolchain(self) -> None:
        """Without inductor's compilers the failure would come deep inside the first step: say it now."""
        runtime = self.runtime
        if not runtime.compile or not (missing := missing_compile_toolchain(runtime.device, runtime.compile_backend)):
            return
        if "compile" in runtime.forced:
            raise CnnzooError(f"--compile on was asked for but {missing}; install it, or use --compile auto "
                              "or off to train without compiling.")
        self.runtime = without(runtime, "compile")
        self._record("compile", None, missing, "before the first step", f"torch.compile is off for this run: {missing}.")

    def _enabled_pieces(self) -> list[str]:
        """The pieces that run now, in FAST_PATH's order: those the runtime asks for, except where less
        runs than it asks: a capture only of the models compile_mode captures, fused kernels only where
        the optimizer has them."""
        runs = {"cuda_graphs": self.compile_mode == "cuda-graph",
                "fused_optimizer": any(g.get("fused") for g in self.optimizer.param_groups)}
        return [piece.name for piece in FAST_PATH if piece.is_on(self.runtime) and runs.get(piece.name, True)]

    def _piece_name(self, piece: str) -> str:
        if piece == "precision":  # bf16 or fp16: the one that ran
            return f"{PRECISION_NAMES[self.runtime.amp_dtype]} autocast"
        return FAST_PATH_PIECES[piece].label

    def _retrying(self, run: Callable[[], T], epoch: int, where: str, snapshot: dict[str, Any] | None = None) -> T:
        """`run()`; each time it fails, again with the next piece off (and the state of `snapshot`)."""
        while True:
            try:
                return run()
            except torch.OutOfMemoryError:
                raise  # not a fast-path failure: the caller explains the batch size
            except Exception as error:
                if self.distributed:
                    raise
                self._fall_back(error, epoch, where)
                if snapshot is not None:
                    self._restore(snapshot)

    def _fall_back(self, error: Exception, epoch: int, where: str) -> None:
        """Turn off the next piece that may be turned off; when none is left, raise (the error itself,
        or one naming the pieces the user asked for)."""
        enabled = self._enabled_pieces()
        allowed = [piece for piece in enabled if piece not in self.runtime.forced]
        if not enabled:
            raise error
        if not allowed:
            raise CnnzooError(f"Training failed at epoch {epoch + 1}, {where} with "
                              f"{', '.join(map(self._piece_name, enabled))} on as asked ({first_line(error)}); set it "
                              "to auto to let cnnzoo fall back to a safer setting, or turn it off.") from error
        # A failure inside the fused kernel is the optimizer's: nothing compiled runs there.
        in_fused = any(frame.name.startswith("_fused") for frame in traceback.extract_tb(error.__traceback__))
        piece = "fused_optimizer" if in_fused and "fused_optimizer" in allowed else allowed[0]
        name, self.runtime = self._piece_name(piece), without(self.runtime, piece)
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
                     f"{name} failed {where} ({first_line(error)}); continuing from there with it off.")

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
        return copy.deepcopy({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                              "scaler": self.scaler.state_dict(), "losses": self.losses, "correct": self.correct,
                              "rng": rng_state()})

    def _restore(self, snapshot: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(snapshot)  # the optimizer takes its tensors over, and another failure reuses it
        self.model.load_state_dict(snapshot["model"])
        lrs = [group["lr"] for group in self.optimizer.param_groups]  # the rebuilt step's kind of rate
        load_optimizer_state(self.optimizer, snapshot["optimizer"])
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scaler.load_state_dict(snapshot["scaler"])
        self.losses.copy_(snapshot["losses"])
        self.correct.copy_(snapshot["correct"])
        restore_rng_state(snapshot["rng"])
        self.optimizer.zero_grad(set_to_none=True)


def without(runtime: Runtime, piece: str) -> Runtime:
    """`runtime` with one fast-path piece (a FAST_PATH name) turned off."""
    return dataclasses.replace(runtime, **FAST_PATH_PIECES[piece].off)


def runtime_after(runtime: Runtime, fallbacks: list[dict[str, Any]]) -> Runtime:
    """`runtime` without the pieces a run's fallbacks turned off, for what runs after `fit` (the final
    evaluation of the run directory), which must not meet the same failure again."""
    for fallback in fallbacks:
        runtime = without(runtime, fallback["piece"])
    return runtime
