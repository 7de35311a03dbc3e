"""The split containers (:class:`DataSplit`, :class:`DataBundle`) and the loaders that fill them:
one split, or train and test with a validation split carved from train."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from cnnzoo.data.catalog import DatasetInfo, PathLike, check_split, get_dataset_info
from cnnzoo.data.files import read_split
from cnnzoo.device import resolve_device
from cnnzoo.errors import CnnzooError

__all__ = ["DataBundle", "DataSplit", "load_data", "load_split"]

DeviceLike = Union[str, torch.device]


@dataclass(frozen=True, eq=False)
class DataSplit:
    """One split, whole, on one device: ``images`` uint8 (N, 1, 28, 28), ``labels`` int64 (N,).

    ``source_index`` (N,) int64: each sample's position in the official file, kept through
    :meth:`subset`, so that a result on a subset can name the image it means; ``None`` for the
    whole file in order. The tensors may be shared with the in-process cache: treat them as read-only.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    dataset: str
    split: str
    source_index: torch.Tensor | None = None

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"DataSplit.images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise ValueError(f"DataSplit.labels must be int64 (N,), got {self.labels.dtype} {tuple(self.labels.shape)}")
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(f"DataSplit has {self.images.shape[0]} images but {self.labels.shape[0]} labels")
        if self.images.device != self.labels.device:
            raise ValueError("DataSplit images and labels must be on the same device")
        if self.source_index is not None and tuple(self.source_index.shape) != tuple(self.labels.shape):
            raise ValueError(f"DataSplit.source_index must have one entry per sample, got {tuple(self.source_index.shape)}")
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: DeviceLike) -> "DataSplit":
        """The same split on ``device`` (``self`` when it is already there)."""
        dev = resolve_device(device)
        if _same_device(dev, self.device):
            return self
        source = self.source_index.to(dev) if self.source_index is not None else None
        return DataSplit(self.images.to(dev), self.labels.to(dev), self.classes, self.dataset, self.split, source)

    def subset(self, indices, split: str | None = None) -> "DataSplit":
        """The samples at ``indices`` (a sequence or tensor of ints, in that order)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).to(self.device)
        if idx.ndim != 1:
            raise ValueError("DataSplit.subset takes a 1-D sequence of indices")
        return DataSplit(self.images[idx], self.labels[idx], self.classes, self.dataset, split or self.split,
                         self.source_indices()[idx])

    def source_indices(self) -> torch.Tensor:
        """Each sample's position in the official file (see ``source_index``), on the split's device."""
        if self.source_index is not None:
            return self.source_index
        return torch.arange(len(self), device=self.device)

    def __repr__(self) -> str:
        return f"DataSplit(dataset={self.dataset!r}, split={self.split!r}, n={len(self)}, device={str(self.device)!r})"


def _same_device(want: torch.device, have: torch.device) -> bool:
    if want.type != have.type:
        return False
    if want.index is None:
        return want.type != "cuda" or have.index == torch.cuda.current_device()
    return want.index == have.index


@dataclass(frozen=True, eq=False)
class DataBundle:
    """What training needs: ``train``, ``val`` (``None`` without a validation split), ``test``
    and the data set's :class:`DatasetInfo`."""

    train: DataSplit
    val: DataSplit | None
    test: DataSplit
    info: DatasetInfo

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def to(self, device: DeviceLike) -> "DataBundle":
        """The same splits on ``device`` (each split unchanged where it is already there)."""
        val = self.val.to(device) if self.val is not None else None
        return DataBundle(self.train.to(device), val, self.test.to(device), self.info)


def load_split(
    dataset: str,
    split: str = "train",
    root: PathLike | None = None,
    device: DeviceLike = "cpu",
    download: bool = True,
) -> DataSplit:
    """Load one whole split, checked, onto ``device``.

    ``root`` defaults to :func:`resolve_data_root`. Missing files are downloaded from
    torchvision's mirrors when ``download`` is true and the folder is writable. The ``.gz``
    files are MD5-checked and parsed in memory (an already-extracted IDX file next to them is
    accepted when the ``.gz`` is absent). Decoded tensors are cached in-process, keyed by path,
    size and modification time, so repeated loads are cheap.
    """
    info = get_dataset_info(dataset)
    split = check_split(split)
    dev = resolve_device(device)
    images, labels = read_split(info, split, root, download)
    return DataSplit(images, labels, info.classes, info.name, split).to(dev)


def _check_limit(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CnnzooError(f"{name} must be a whole number of at least 1 (or None for all), got {value!r}.")
    return int(value)


def _seeded_subset(n: int, k: int, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random subset of size ``k`` of ``range(n)``."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)[:k].sort().values


def _val_count(val_split, n: int) -> int:
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float, np.integer, np.floating)):
        raise CnnzooError(f"val_split must be a fraction in [0, 1) or a number of images, got {val_split!r}.")
    if isinstance(val_split, (float, np.floating)) and 0 <= val_split < 1:
        count = int(round(float(val_split) * n))
    elif isinstance(val_split, (int, np.integer)) and 0 <= val_split:
        count = int(val_split)
    else:
        raise CnnzooError(f"val_split must be a fraction in [0, 1) or a number of images, got {val_split!r}.")
    if count >= n and count > 0:
        raise CnnzooError(f"val_split={val_split!r} leaves no training images out of {n}; use a smaller value.")
    return count


VAL_HOLDOUTS = ("random", "last")


def _keras_val_count(val_split, n: int) -> int:
    """Keras' ``validation_split``: training keeps the first floor(n * (1 - split)) samples."""
    if isinstance(val_split, bool) or not isinstance(val_split, (float, np.floating)) or not 0 <= val_split < 1:
        raise CnnzooError(f"val_holdout='last' takes val_split as a fraction in [0, 1) as Keras does, got {val_split!r}.")
    count = n - int(math.floor(n * (1.0 - float(val_split))))
    if count >= n and count > 0:
        raise CnnzooError(f"val_split={val_split!r} leaves no training images out of {n}; use a smaller value.")
    return count


def _split_indices(labels: torch.Tensor, count: int, seed: int, stratify: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx), both sorted, ``count`` going to validation."""
    n = labels.shape[0]
    gen = torch.Generator().manual_seed(int(seed) + 1)  # a stream apart from limit_train's
    perm = torch.randperm(n, generator=gen)
    if not stratify or count == 0:
        val = perm[:count]
    else:
        # Proportional allocation per class (largest remainders), each class in permuted order.
        shuffled = labels[perm]
        classes, counts = torch.unique(shuffled, return_counts=True)
        exact = counts.double() * count / n
        take = exact.floor().long()
        short = count - int(take.sum())
        if short > 0:
            take[torch.argsort(exact - take.double(), descending=True, stable=True)[:short]] += 1
        parts = [perm[shuffled == c][: int(t)] for c, t in zip(classes.tolist(), take.tolist(), strict=True)]
        val = torch.cat(parts) if parts else perm[:0]
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    return mask.nonzero().squeeze(1), val.sort().values


def load_data(
    dataset: str,
    root: PathLike | None = None,
    device: DeviceLike = "cpu",
    val_split: float = 0.0,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    download: bool = True,
    stratify: bool = False,
    val_holdout: str = "random",
) -> DataBundle:
    """Load train and test (and carve a validation split from train), each moved to ``device``
    once, whole, as uint8.

    - ``limit_train`` / ``limit_test``: keep a seeded random subset of that many images (in
      their original order) -- for quick runs and tests. ``limit_train`` applies first; the
      validation split is then carved from what is left.
    - ``val_split``: a fraction in [0, 1) of the (limited) training images, or a whole number
      of images, chosen by a permutation seeded with ``seed`` (per class in proportion when
      ``stratify``). ``0`` gives ``val=None``. With ``val_holdout="last"`` the validation
      images are instead the last ``val_split`` of the training arrays, unshuffled, as Keras'
      ``fit(validation_split=...)`` takes them (60,000 x 0.2: the last 12,000).
    """
    info = get_dataset_info(dataset)
    dev = resolve_device(device)
    limit_train = _check_limit("limit_train", limit_train)
    limit_test = _check_limit("limit_test", limit_test)
    train = load_split(info.name, "train", root, "cpu", download)
    test = load_split(info.name, "test", root, "cpu", download)
    if limit_train is not None and limit_train < len(train):
        train = train.subset(_seeded_subset(len(train), limit_train, seed))
    if limit_test is not None and limit_test < len(test):
        test = test.subset(_seeded_subset(len(test), limit_test, seed))
    if val_holdout not in VAL_HOLDOUTS:
        raise CnnzooError(f"val_holdout must be one of {', '.join(VAL_HOLDOUTS)}, got {val_holdout!r}.")
    val = None
    n = len(train)
    count = _keras_val_count(val_split, n) if val_holdout == "last" else _val_count(val_split, n)
    if val_split and count == 0:
        # A validation split that holds out nothing would leave --early-stop and best.safetensors without data.
        raise CnnzooError(f"val_split={val_split!r} of {n} training images holds out no image; use a larger fraction "
                          f"(at least {1 / n:.2g}) or a number of images, or leave --val-split out.")
    if count > 0:
        if val_holdout == "last":
            train_idx, val_idx = torch.arange(n - count), torch.arange(n - count, n)
        else:
            train_idx, val_idx = _split_indices(train.labels, count, seed, stratify)
        val = train.subset(val_idx, split="val")
        train = train.subset(train_idx)
    return DataBundle(
        train=train.to(dev),
        val=val.to(dev) if val is not None else None,
        test=test.to(dev),
        info=info,
    )
