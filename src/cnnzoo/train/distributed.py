"""Data-parallel training over several processes, as started by torchrun.

Every process (rank) holds the whole model and its part of every global batch; DDP averages the
gradients, so all ranks take the same optimizer step. Only rank 0 writes the run directory.
Without torchrun's variables the context is a single process and nothing here does anything.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
from torch import nn

from cnnzoo.data.batches import epoch_seed
from cnnzoo.errors import CnnzooError
from cnnzoo.nn.batchnorm import BatchNorm1d, BatchNorm2d
from cnnzoo.device import resolve_device


def launched_rank() -> int:
    """This process's rank under torchrun (0 when not launched by it)."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # None: the run's --device decides

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> DistContext:
        """The context torchrun's RANK, WORLD_SIZE and LOCAL_RANK describe, with its process group joined
        (once per process, left at exit): NCCL with one GPU per local rank, or gloo on CPUs."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        resolved = resolve_device(device)
        if world_size == 1:
            return cls(device=resolved)
        local_rank = int(os.environ["LOCAL_RANK"])
        if resolved.type == "mps":  # neither NCCL nor gloo carries MPS tensors, and a Mac has one GPU
            raise CnnzooError("torchrun cannot train on MPS (a Mac has one GPU and no collective backend for it); "
                              "run `cnnzoo train --device mps` as one process, or use --device cpu under torchrun.")
        if resolved.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise CnnzooError(
                    f"torchrun started process {local_rank} on this machine but it has only "
                    f"{torch.cuda.device_count()} GPU(s); use --nproc_per_node {torch.cuda.device_count()}."
                )
            resolved = torch.device("cuda", local_rank)
        if not dist.is_initialized():
            if resolved.type == "cuda":
                torch.cuda.set_device(resolved)
                dist.init_process_group("nccl", device_id=resolved)
            else:
                dist.init_process_group("gloo")
            atexit.register(_leave_process_group)
        return cls(rank=launched_rank(), world_size=world_size, local_rank=local_rank, device=resolved)

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """With several processes, give each rank its own dropout stream for `epoch`, a pure function of
        (seed, epoch, rank): ranks would otherwise draw identical masks for different samples, and
        rank 0's checkpointed RNG state could not restore the others' on resume. One process keeps
        its continuous stream, checkpointed as before."""
        if self.world_size > 1:
            torch.manual_seed(epoch_seed(seed, epoch, 2 + self.rank))  # streams 0 and 1 are the batches'

    def per_rank_batch(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise CnnzooError(
                f"--batch-size is the global batch and must split evenly over the {self.world_size} processes; "
                f"{global_batch} does not, use a multiple of {self.world_size} such as "
                f"{self.world_size * max(1, round(global_batch / self.world_size))}."
            )
        return global_batch // self.world_size

    def sync_batchnorm(self, model: nn.Module) -> nn.Module:
        """Batch norm over the global batch instead of each rank's part (call before building the optimizer)."""
        if self.world_size == 1:
            return model
        if self.device.type == "cpu":
            return _GlooSyncBatchNorm.convert(model)
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as the training step should call it: DDP all-reduces gradients in backward."""
        if self.world_size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise mean over ranks; the global mean when every rank averaged equally many samples."""
        return self.sum(tensor) / self.world_size

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            tensor = tensor.clone()
            dist.all_reduce(tensor)
        return tensor


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable: backward all-reduces the incoming gradient."""
    return collectives.wait_tensor(collectives.all_reduce(tensor, "sum", dist.group.WORLD))


class _GlooSyncBatchNorm(BatchNorm2d):
    """Batch norm over the global batch for CPU tensors, which torch's SyncBatchNorm refuses (its kernels
    and DDP's support for it are GPU-only).

    The statistics are all-reduced with autograd-aware collectives, so backward gives each rank its
    share of the global-batch gradient, as torch's GPU kernels do; normalizing and the running
    estimates are the hand-written layer's own arithmetic. Eval mode uses running statistics.
    """

    _expected_dims = (2, 3, 4, 5)
    _dims_text = "2D to 5D"

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Like `nn.SyncBatchNorm.convert_sync_batchnorm`: the same parameter and buffer objects, so
        parameter groups made before still hold them."""
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, BatchNorm1d, BatchNorm2d)):
            synced = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                         denominator=getattr(module, "denominator", "sqrt_var"))
            if module.affine:
                synced.weight, synced.bias = module.weight, module.bias
            if module.track_running_stats:
                synced.running_mean, synced.running_var = module.running_mean, module.running_var
                synced.num_batches_tracked = module.num_batches_tracked
            return synced.train(module.training)
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        out_dtype, x = x.dtype, x.float()  # statistics of bf16 activations (autocast) in float32, as torch's kernels
        # The count travels with the sums, so no rank needs a separate (host-synchronizing) exchange.
        sums = _all_reduce(torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])]))
        count, mean = sums[-1], sums[:-1] / sums[-1]
        centered = x - mean.view(shape)
        # Two passes, like the single-process kernel, rather than E[x²] - E[x]², which cancels badly.
        var = _all_reduce((centered * centered).sum(dims)) / count
        if self.track_running_stats:
            self.update_running_stats(mean, var, count)
        return self.normalize(x, mean, var).to(out_dtype)
