"""Batches on the device: shuffling, augmentation, resizing and normalization without a
DataLoader, worker processes or per-batch host-to-device copies.

A :class:`~cnnzoo.data.DataSplit` already lives whole on the device as uint8; a
:class:`BatchIterator` only gathers indices from it. Every random choice of epoch ``e`` (the
permutation, the crop offsets, the flips, the erased boxes) comes from a ``torch.Generator`` on the split's
device seeded from ``(seed, e)`` -- never from the global RNG -- so an epoch is a pure function
of ``(seed, e)`` and a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnzoo.data.transforms import check_resize_mode, convert, resolve_input_size, shaped_normalize
from cnnzoo.errors import CnnzooError
from cnnzoo.values import is_number, is_whole

__all__ = ["Augment", "BatchIterator", "draw_erasing", "epoch_seed", "random_erase"]

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied on the device at the native 28x28 resolution.

    ``crop_padding``: pad each image by this many zero pixels on every side and crop a random
    window of the original size back out (a shift of up to ``crop_padding`` pixels, with
    zeros filling in). ``hflip``: flip each image left-right with probability 1/2.
    ``random_erasing``: the probability that an image has one random box erased after its crop
    and flip (see :func:`random_erase`); 0 turns it off, Zhong et al. use 0.5.
    """

    crop_padding: int = 0
    hflip: bool = False
    random_erasing: float = 0.0

    def __post_init__(self):
        if not (is_whole(self.crop_padding) and self.crop_padding >= 0):
            raise CnnzooError(f"crop_padding must be a whole number of pixels >= 0, got {self.crop_padding!r}.")
        if not (is_number(self.random_erasing) and 0 <= self.random_erasing <= 1):
            raise CnnzooError(f"random_erasing must be a probability in [0, 1], got {self.random_erasing!r}.")

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or bool(self.hflip) or self.random_erasing > 0


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed that is a fixed function of ``(seed, epoch, stream)`` (SplitMix64 mixing),
    so neighbouring seeds or epochs give unrelated random streams."""
    state = 0
    for value in (seed, epoch, stream):
        state = (state ^ (int(value) & _MASK64)) & _MASK64
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state & ((1 << 63) - 1)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _random_crop(x: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Crop (B, C, H, W) ``x`` zero-padded by ``pad`` at per-sample ``offsets`` (B, 2) in
    [0, 2*pad]: one gather, no Python loop over samples."""
    b, c, h, w = x.shape
    pw = w + 2 * pad
    padded = F.pad(x, (pad, pad, pad, pad)).flatten(2)  # (B, C, (H+2p)*(W+2p))
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (B, W)
    flat = (rows[:, :, None] * pw + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(padded, 2, flat).view(b, c, h, w)


# Random erasing's box distribution (Zhong et al. 2017, section 3.1 and their code): area a
# uniform fraction of the image, aspect ratio height/width in [0.3, 1/0.3].
ERASE_AREA = (0.02, 0.4)
ERASE_MIN_ASPECT = 0.3
# Their code redraws a box that does not fit (up to 100 times) and leaves the image whole if none
# does; a batched draw tries this many candidates at once. At 28x28 about 30% of candidates fail,
# so all ERASE_CANDIDATES fail for about one image in 10**5 (which then stays whole, as theirs).
ERASE_CANDIDATES = 10


def draw_erasing(count: int, channels: int, height: int, width: int, generator: torch.Generator,
                 device: torch.device, dtype: torch.dtype = torch.uint8) -> tuple[torch.Tensor, torch.Tensor]:
    """The randomness :func:`random_erase` needs for ``count`` images: ``draws`` (count, 1 +
    4 * ERASE_CANDIDATES) uniform [0, 1) numbers and ``fill`` (count, C, H, W) random pixel values
    (uniform over 0..255 for uint8, [0, 1) for floats), all from ``generator``."""
    draws = torch.rand(count, 1 + 4 * ERASE_CANDIDATES, generator=generator, device=device)
    if dtype == torch.uint8:
        fill = torch.randint(0, 256, (count, channels, height, width), generator=generator, device=device, dtype=dtype)
    else:
        fill = torch.rand(count, channels, height, width, generator=generator, device=device, dtype=dtype)
    return draws, fill


def random_erase(x: torch.Tensor, probability: float, draws: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017) of the batch ``x`` (B, C, H, W): with ``probability``
    each image has one box replaced by the matching pixels of ``fill`` (B, C, H, W).

    One batched operation, a pure function of its arguments: the randomness comes in as
    ``draws`` (B, 1 + 4 * ERASE_CANDIDATES) uniforms from :func:`draw_erasing`, and nothing here
    reads a value back to the host, so it can run inside a captured CUDA graph. Per image, column
    0 decides whether to erase; each candidate box takes an area uniform in ERASE_AREA of the
    image and an aspect ratio log-uniform in [ERASE_MIN_ASPECT, 1 / ERASE_MIN_ASPECT] (symmetric
    between tall and wide boxes, as torchvision's RandomErasing; the paper's code draws it
    uniformly), with sides rounded to whole pixels and a top-left corner uniform over the
    positions where it fits. The first candidate strictly smaller than the image in both sides is
    the box (the paper's code's test); an image none fits stays whole.

    The fill is random pixel values (the paper's best variant, RE-R), drawn in the space ``x`` is
    in: in cnnzoo's iterator that is raw uint8 pixels before normalization, so an erased pixel is
    a uniform 0..255 grey level, normalized afterwards like every other pixel.
    """
    b, _, height, width = x.shape
    erase = draws[:, 0] < probability  # (B,)
    area_u, aspect_u, top_u, left_u = draws[:, 1:].view(b, ERASE_CANDIDATES, 4).unbind(-1)  # each (B, K)
    low, high = ERASE_AREA
    area = (low + (high - low) * area_u) * (height * width)
    log_ratio = math.log(ERASE_MIN_ASPECT) * (1 - 2 * aspect_u)  # uniform in [log 0.3, -log 0.3]
    aspect = torch.exp(log_ratio)
    box_h = torch.sqrt(area * aspect).round().clamp(min=1)
    box_w = torch.sqrt(area / aspect).round().clamp(min=1)
    fits = (box_h < height) & (box_w < width)
    first = torch.argmax(fits.to(torch.uint8), dim=1, keepdim=True)  # the first fitting candidate (0 if none)
    erase = erase & fits.any(dim=1)
    box_h, box_w = box_h.gather(1, first), box_w.gather(1, first)  # (B, 1)
    top = torch.floor(top_u.gather(1, first) * (height - box_h + 1))  # in 0..H - h, as u < 1
    left = torch.floor(left_u.gather(1, first) * (width - box_w + 1))
    rows = torch.arange(height, device=x.device)[None, :]  # (1, H)
    cols = torch.arange(width, device=x.device)[None, :]
    in_rows = (rows >= top) & (rows < top + box_h)  # (B, H)
    in_cols = (cols >= left) & (cols < left + box_w)  # (B, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :]) & erase[:, None, None]  # (B, H, W)
    return torch.where(mask[:, None], fill, x)


def apply_augment(x: torch.Tensor, augment: Augment, offsets: torch.Tensor | None, flips: torch.Tensor | None,
                  erasing: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Apply ``augment`` to the batch ``x`` (B, C, H, W) with pre-drawn randomness
    (``erasing``: the ``(draws, fill)`` of :func:`draw_erasing`)."""
    if augment.crop_padding > 0 and offsets is not None:
        x = _random_crop(x, augment.crop_padding, offsets)
    if augment.hflip and flips is not None:
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    if augment.random_erasing > 0 and erasing is not None:
        x = random_erase(x, augment.random_erasing, *erasing)
    return x


class BatchIterator:
    """Mini-batches ``(x, y)`` of a :class:`~cnnzoo.data.DataSplit`, on its device.

    ``x`` is float (``dtype``) NCHW (``channels_last`` memory format if asked), already
    augmented (at 28x28), resized to ``input_size`` (as ``resize_mode`` says, see
    :func:`preprocess`) and normalized with ``normalize=(mean, std)`` -- in that order; ``y`` is int64.

    Epochs: call :meth:`set_epoch` before iterating (like ``DistributedSampler``); epoch
    ``e``'s order and augmentation are a pure function of ``(seed, e)``, drawn from
    ``torch.Generator`` objects on the split's device (so CPU and CUDA give different, but each
    reproducible, orders). The global RNG is never touched.

    Sharding: with ``world_size > 1`` every rank builds the same permutation (padded with its
    own first indices to a multiple of ``world_size``, or with ``drop_last`` trimmed to one),
    cuts it into global batches of ``batch_size * world_size`` and takes the ``rank``-th equal
    part of each. So step ``i`` of all ranks together sees exactly batch ``i`` of one process
    with the global batch size, and every rank's batch of a step has the same size.
    ``batch_size`` is the per-rank batch. ``drop_last`` drops the last incomplete step.
    """

    def __init__(
        self,
        split,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        input_size=None,
        normalize=None,
        augment: Augment | None = None,
        drop_last: bool = False,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        resize_mode: str = "tensor",
    ):
        if not (is_whole(batch_size) and batch_size >= 1):
            raise CnnzooError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
        if not (is_whole(world_size) and world_size >= 1):
            raise CnnzooError(f"world_size must be a whole number >= 1, got {world_size!r}.")
        if not (is_whole(rank) and 0 <= rank < world_size):
            raise CnnzooError(f"rank must be in [0, {world_size}), got {rank!r}.")
        if augment is not None and not isinstance(augment, Augment):
            raise CnnzooError(f"augment must be an Augment or None, got {augment!r}.")
        if not dtype.is_floating_point:
            raise CnnzooError(f"dtype must be a floating-point dtype, got {dtype}.")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.input_size = resolve_input_size(input_size)
        self.resize_mode = check_resize_mode(resize_mode)
        self.normalize = normalize
        self._norm = shaped_normalize(normalize, split.images.shape[1], split.images.device)  # checked and moved once
        self.augment = augment if augment is not None and augment.enabled else None
        self.drop_last = bool(drop_last)
        self.dtype = dtype
        self.channels_last = bool(channels_last)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    # -- sizes -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.split.images.device

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n = len(self.split)
        if self.drop_last:
            return n // self.world_size
        return math.ceil(n / self.world_size)

    @property
    def total_size(self) -> int:
        """Length of the (padded or trimmed) permutation shared by all ranks."""
        return self.num_samples * self.world_size

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch`` (0-based) for the next iteration."""
        if not (is_whole(epoch) and epoch >= 0):
            raise CnnzooError(f"epoch must be a whole number >= 0, got {epoch!r}.")
        self.epoch = epoch

    # -- the epoch's randomness ---------------------------------------------------------------
    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's sample indices for ``epoch`` (default: the current one), on the device."""
        return self._plan(self.epoch if epoch is None else epoch)[0]

    def _plan(self, epoch: int):
        n = len(self.split)
        dev = self.device
        if self.shuffle:
            perm = torch.randperm(n, generator=_generator(dev, epoch_seed(self.seed, epoch, 0)), device=dev)
        else:
            perm = torch.arange(n, device=dev)
        total = self.total_size
        if total > n:  # pad by repeating the start of the permutation (as DistributedSampler)
            reps = math.ceil(total / max(n, 1))
            perm = perm.repeat(reps)[:total]
        else:
            perm = perm[:total]
        offsets = flips = None
        if self.augment is not None:
            # One draw per position of the shared permutation: independent of rank and batch size.
            gen = _generator(dev, epoch_seed(self.seed, epoch, 1))
            if self.augment.crop_padding > 0:
                high = 2 * self.augment.crop_padding + 1
                offsets = torch.randint(0, high, (total, 2), generator=gen, device=dev)
            if self.augment.hflip:
                flips = torch.rand(total, generator=gen, device=dev) < 0.5
        erasing = None
        if self.augment is not None and self.augment.random_erasing > 0:
            # Its own stream, so turning erasing on leaves the epoch's crops and flips as they were.
            gen = _generator(dev, epoch_seed(self.seed, epoch, 2))
            erasing = draw_erasing(total, *self.split.images.shape[1:], generator=gen, device=dev,
                                   dtype=self.split.images.dtype)
        mine = self._positions(total)
        return (perm[mine], (offsets[mine] if offsets is not None else None),
                (flips[mine] if flips is not None else None),
                tuple(t[mine] for t in erasing) if erasing is not None else None)

    def _positions(self, total: int) -> torch.Tensor:
        """This rank's positions in the shared permutation: its part of every global batch."""
        whole = self.batch_size * self.world_size * (total // (self.batch_size * self.world_size))
        positions = torch.arange(total, device=self.device)
        full = positions[:whole].view(-1, self.world_size, self.batch_size)[:, self.rank].flatten()
        return torch.cat([full, positions[whole:].view(self.world_size, -1)[self.rank]])

    # -- iteration ---------------------------------------------------------------------------
    # A batch is `make_batch` of its slice of the epoch's plan: pure tensor work on the device (no host
    # read, no global RNG), so the training step can compile or capture it together with the model.
    def epoch_plan(self, epoch: int) -> tuple[torch.Tensor | None, ...]:
        """Epoch ``epoch``'s sample indices and random draws for this rank, on the device, as one flat
        tuple of tensors (None where an augmentation is off): indices, offsets, flips, erasing's draws
        and fill."""
        indices, offsets, flips, erasing = self._plan(epoch)
        return indices, offsets, flips, *(erasing or (None, None))

    def batch_draws(self, plan, b: int) -> tuple[torch.Tensor | None, ...]:
        """Batch ``b``'s slice of every tensor of ``plan`` (`_plan`'s indices and random draws)."""
        sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
        return tuple(None if t is None else t[sl] for t in plan)

    def batch_sizes(self) -> list[int]:
        return [min(self.batch_size, self.num_samples - b * self.batch_size) for b in range(len(self))]

    def make_batch(self, idx: torch.Tensor, offsets: torch.Tensor | None = None, flips: torch.Tensor | None = None,
                   erase_draws: torch.Tensor | None = None,
                   erase_fill: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` for the sample indices ``idx`` and their random draws (`epoch_plan`'s slices)."""
        x = self.split.images[idx]
        if self.augment is not None:
            erasing = None if erase_draws is None else (erase_draws, erase_fill)
            x = apply_augment(x, self.augment, offsets, flips, erasing)
        x = convert(x, self.input_size, self._norm, self.dtype, self.channels_last, self.resize_mode)
        return x, self.split.labels[idx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.epoch_plan(self.epoch)
        for b in range(len(self)):
            yield self.make_batch(*self.batch_draws(plan, b))

    def __repr__(self) -> str:
        return (
            f"BatchIterator({self.split!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
            f"epoch={self.epoch}, rank={self.rank}/{self.world_size}, batches={len(self)})"
        )
