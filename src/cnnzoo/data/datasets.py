"""Fashion-MNIST and MNIST: where the files live, how they are checked, and how they are read.

The files are the official gzipped IDX files in torchvision's layout
(``<root>/FashionMNIST/raw/train-images-idx3-ubyte.gz`` ...). torchvision's dataset classes
supply the file names, the official MD5s, the download mirrors and the class names, but the
files are read here by a strict in-memory IDX parser, so a read-only data folder that holds
only the ``.gz`` files works as it is (nothing is extracted next to them).

Every problem a user can cause (missing file, corrupt file, wrong layout) raises a
:class:`~cnnzoo.errors.CnnzooError` whose message is one sentence that names the file, says what
is wrong and what to do. A data set is either loaded whole and valid, or not at all.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import download_url

from cnnzoo.errors import CnnzooError

__all__ = [
    "DATASETS",
    "DataBundle",
    "DataSplit",
    "DatasetInfo",
    "IdxFormatError",
    "SPLITS",
    "canonical_dataset_name",
    "clear_cache",
    "decode_idx_gz",
    "get_dataset_info",
    "load_data",
    "load_split",
    "parse_idx",
    "resolve_data_root",
]

PathLike = Union[str, "os.PathLike[str]"]
DeviceLike = Union[str, torch.device]

SPLITS = ("train", "test")
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
# The largest decompressed IDX file we accept (train images are 47,040,016 bytes): a guard
# against gzip bombs and absurd headers, not a limit anyone should meet with real data.
MAX_IDX_BYTES = 64 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "set CNNZOO_DATA (or --data-dir) to a folder that holds good copies"


# --------------------------------------------------------------------------------------------
# Data set descriptions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """What cnnzoo knows about one data set.

    ``mean``/``std`` are the statistics of the training pixels scaled to [0, 1] (the usual
    normalization constants). ``folder`` is torchvision's folder name under the data root;
    the files are in ``<root>/<folder>/raw/``.
    """

    name: str
    display_name: str
    torchvision_class: type
    folder: str
    classes: tuple[str, ...]
    mean: float
    std: float
    image_shape: tuple[int, int, int] = (1, 28, 28)
    train_size: int = 60000
    test_size: int = 10000

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def normalize(self) -> tuple[float, float]:
        """``(mean, std)`` as :func:`cnnzoo.data.preprocess` takes it."""
        return (self.mean, self.std)

    def split_size(self, split: str) -> int:
        """Number of images in the official ``split``."""
        return self.train_size if _check_split(split) == "train" else self.test_size

    @property
    def mirrors(self) -> tuple[str, ...]:
        return tuple(self.torchvision_class.mirrors)

    def files(self, split: str) -> tuple[tuple[str, str], tuple[str, str]]:
        """``((images_file, md5), (labels_file, md5))`` of a split, from torchvision's list."""
        split = _check_split(split)
        prefix = "train-" if split == "train" else "t10k-"
        resources = [r for r in self.torchvision_class.resources if r[0].startswith(prefix)]
        images = [r for r in resources if "images" in r[0]]
        labels = [r for r in resources if "labels" in r[0]]
        if len(images) != 1 or len(labels) != 1:  # pragma: no cover - torchvision changed
            raise RuntimeError(f"unexpected torchvision resources for {self.folder}: {resources}")
        return tuple(images[0]), tuple(labels[0])


def _info(name, display, cls, mean, std) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        display_name=display,
        torchvision_class=cls,
        folder=cls.__name__,
        classes=tuple(cls.classes),
        mean=mean,
        std=std,
    )


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": _info("fashion-mnist", "Fashion-MNIST", tv_datasets.FashionMNIST, 0.2860, 0.3530),
    "mnist": _info("mnist", "MNIST", tv_datasets.MNIST, 0.1307, 0.3081),
}


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_ALIASES = {_squash(k): k for k in DATASETS} | {_squash(v.folder): k for k, v in DATASETS.items()}


def canonical_dataset_name(name: str | DatasetInfo) -> str:
    """``"fashion-mnist"`` or ``"mnist"``; accepts spellings such as ``fashion_mnist`` or
    ``FashionMNIST``. Raises CnnzooError listing the valid names otherwise."""
    if isinstance(name, DatasetInfo):
        return name.name
    if isinstance(name, str):
        key = _ALIASES.get(_squash(name))
        if key is not None:
            return key
    valid = ", ".join(sorted(DATASETS))
    raise CnnzooError(f"Unknown data set {name!r}; choose one of: {valid}.")


def get_dataset_info(name: str | DatasetInfo) -> DatasetInfo:
    """The :class:`DatasetInfo` for a data set name (aliases accepted)."""
    return DATASETS[canonical_dataset_name(name)]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise CnnzooError(f"Unknown split {split!r}; choose one of: {', '.join(SPLITS)}.")
    return split


# --------------------------------------------------------------------------------------------
# Where the data lives
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cnnzoo``, else ``~/.cache/cnnzoo``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "cnnzoo"


def resolve_data_root(data_dir: PathLike | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$CNNZOO_DATA``, else a per-user cache
    folder (``$XDG_CACHE_HOME/cnnzoo`` or ``~/.cache/cnnzoo``). The root is the folder that
    contains ``FashionMNIST/`` and ``MNIST/``. Nothing is created here."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("CNNZOO_DATA")
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def _raw_dir_candidates(root: Path, info: DatasetInfo) -> list[Path]:
    """Where the files of a data set may be: ``root/<folder>/raw`` (torchvision's layout);
    also accept a root that already points at ``<folder>`` or at ``<folder>/raw``."""
    candidates = [root / info.folder / "raw"]
    if root.name == info.folder:
        candidates.append(root / "raw")
    if root.name == "raw" and root.parent.name == info.folder:
        candidates.append(root)
    return candidates


# --------------------------------------------------------------------------------------------
# IDX parsing (strict, in memory)
# --------------------------------------------------------------------------------------------


class IdxFormatError(CnnzooError):
    """A file is not the IDX (or gzipped IDX) file it should be; ``reason`` says why."""

    def __init__(self, name: str, reason: str, fix: str | None = None):
        self.name = name
        self.reason = reason
        message = f"{name} {reason}"
        if fix:
            message += f"; {fix}"
        super().__init__(message + ".")


def decode_idx_gz(data: bytes, *, name: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """Decompress gzip ``data`` fully in memory (checking the CRC and length trailer of every
    member); raises :class:`IdxFormatError` for anything but a complete, valid gzip stream
    whose output is at most ``max_bytes``."""
    data = bytes(data)
    if len(data) == 0:
        raise IdxFormatError(name, "is empty")
    if data[:2] != _GZIP_MAGIC:
        raise IdxFormatError(name, "is not a gzip file (its first bytes are not the gzip signature 1f 8b)")
    out = bytearray()
    decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pending = data
    while True:
        try:
            chunk = decomp.decompress(pending, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise IdxFormatError(name, f"is a damaged gzip file ({exc})") from None
        out += chunk
        if len(out) > max_bytes:
            raise IdxFormatError(name, f"decompresses to more than {max_bytes} bytes, far more than any MNIST file")
        if decomp.eof:
            rest = decomp.unused_data
            if not rest:
                break
            if rest[:2] == _GZIP_MAGIC:  # another gzip member follows (allowed by the format)
                decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                pending = rest
                continue
            raise IdxFormatError(name, f"has {len(rest)} bytes of garbage after the end of its gzip stream")
        if decomp.unconsumed_tail:
            pending = decomp.unconsumed_tail
        elif chunk:
            pending = b""  # output was capped; let zlib continue with what it holds
        else:
            raise IdxFormatError(name, "is truncated (its gzip stream ends early)")
    return bytes(out)


def parse_idx(data: bytes, *, name: str = "<bytes>", expect_magic: int | None = None) -> torch.Tensor:
    """Parse an uncompressed IDX file of unsigned bytes into a uint8 tensor of its shape.

    Checks the magic number (type code 0x08, 1-4 dimensions, or exactly ``expect_magic``) and
    that the data is exactly ``prod(dims)`` bytes long; raises :class:`IdxFormatError`.
    """
    data = memoryview(bytes(data))
    if len(data) < 4:
        raise IdxFormatError(name, f"is not an IDX file: it is only {len(data)} bytes long, shorter than the 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        kind = {IDX_IMAGES_MAGIC: "images", IDX_LABELS_MAGIC: "labels"}.get(expect_magic, "this file")
        raise IdxFormatError(name, f"has the wrong magic number {magic} (expected {expect_magic} for {kind})")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code != 0x08 or not 1 <= ndim <= 4:
        raise IdxFormatError(
            name,
            f"has the wrong magic number {magic} (expected 0x0000080N: unsigned bytes in N = 1 to 4 dimensions)",
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(name, f"is truncated: its header needs {header} bytes but the file has {len(data)}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=object)) if dims else 0
    actual = len(data) - header
    if actual < expected:
        raise IdxFormatError(name, f"is truncated: its header {dims} needs {expected} data bytes but it has {actual}")
    if actual > expected:
        raise IdxFormatError(name, f"has the wrong size: its header {dims} needs {expected} data bytes but it has {actual}")
    array = np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())


# --------------------------------------------------------------------------------------------
# Reading one split from disk
# --------------------------------------------------------------------------------------------


def _md5(data: bytes) -> str:
    # The same digest as torchvision.datasets.utils.calculate_md5, taken from the bytes we
    # decode (one read, so the checked bytes are the parsed bytes).
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CnnzooError(f"Cannot read {path} ({exc.strerror or exc}); check its permissions or {_FIX}.") from None


def _load_idx_file(path: Path, md5: str | None, expect_magic: int) -> torch.Tensor:
    """Read ``path`` (``.gz`` checked against ``md5``, or an already-extracted file)."""
    data = _read_bytes(path)
    name = str(path)
    if path.suffix != ".gz":
        return parse_idx(data, name=name, expect_magic=expect_magic)
    if md5 is not None:
        got = _md5(data)
        if got != md5:
            try:  # say what is wrong with it, if we can tell
                parse_idx(decode_idx_gz(data, name=name), name=name, expect_magic=expect_magic)
                diagnosis = "its contents differ from the official file"
            except IdxFormatError as exc:
                diagnosis = exc.reason
            raise CnnzooError(
                f"{name} fails its checksum (MD5 {got}, expected the official {md5}: {diagnosis}); "
                f"delete it so it is downloaded again, or {_FIX}."
            )
    return parse_idx(decode_idx_gz(data, name=name), name=name, expect_magic=expect_magic)


def _decode_split(info: DatasetInfo, split: str, images_path: Path, labels_path: Path, md5s) -> tuple[torch.Tensor, torch.Tensor]:
    images = _load_idx_file(images_path, md5s[0], IDX_IMAGES_MAGIC)
    labels = _load_idx_file(labels_path, md5s[1], IDX_LABELS_MAGIC)
    _, height, width = info.image_shape
    if tuple(images.shape[1:]) != (height, width):
        raise CnnzooError(
            f"{images_path} holds images of {tuple(images.shape[1:])} pixels, not the {height}x{width} of "
            f"{info.display_name}; {_FIX}."
        )
    expected_n = info.split_size(split)
    if images.shape[0] != labels.shape[0]:
        raise CnnzooError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels "
            f"(the counts must match); {_FIX}."
        )
    if images.shape[0] != expected_n:
        raise CnnzooError(
            f"{images_path} holds {images.shape[0]} images, not the {expected_n} of the {info.display_name} "
            f"{split} split; {_FIX}."
        )
    if labels.numel() and int(labels.max()) >= info.num_classes:
        bad = int((labels >= info.num_classes).nonzero()[0, 0])
        raise CnnzooError(
            f"{labels_path} has label {int(labels[bad])} at index {bad}, out of range for the "
            f"{info.num_classes} classes of {info.display_name}; {_FIX}."
        )
    return images.unsqueeze(1).contiguous(), labels.to(torch.int64)


@functools.lru_cache(maxsize=8)
def _decode_split_cached(key: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    name, split, images_path, labels_path, md5s = key[:5]
    return _decode_split(DATASETS[name], split, Path(images_path), Path(labels_path), md5s)


def clear_cache() -> None:
    """Forget the decoded splits kept in memory by :func:`load_split`."""
    _decode_split_cached.cache_clear()


def _find_files(root: Path, info: DatasetInfo, split: str):
    """``(raw_dir, [(path, md5 or None), ...])`` if both files of ``split`` exist somewhere
    among the candidate folders (gz preferred, an extracted copy accepted), else ``(None, missing)``."""
    wanted = info.files(split)
    for raw in _raw_dir_candidates(root, info):
        found = []
        for filename, md5 in wanted:
            gz = raw / filename
            plain = raw / filename[: -len(".gz")]
            if gz.is_file():
                found.append((gz, md5))
            elif plain.is_file():
                found.append((plain, None))
        if len(found) == len(wanted):
            return raw, found
    return None, [f for f, _ in wanted]


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _download(info: DatasetInfo, raw_dir: Path, split: str) -> None:
    """Fetch the missing files of ``split`` into ``raw_dir`` from torchvision's mirrors. Each
    file is downloaded into a temporary folder, MD5-checked, then renamed into place, so an
    interrupted download never leaves a partial file behind."""
    for filename, md5 in info.files(split):
        target = raw_dir / filename
        if target.is_file():
            continue
        errors = []
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=raw_dir))
        try:
            for mirror in info.mirrors:
                try:
                    download_url(f"{mirror}{filename}", root=str(tmp), filename=filename, md5=md5)
                    downloaded = tmp / filename
                    if not downloaded.is_file() or _md5(downloaded.read_bytes()) != md5:
                        raise RuntimeError("the downloaded file is missing or fails its MD5 check")
                    os.replace(downloaded, target)
                    break
                except Exception as exc:  # network errors come in many types
                    errors.append(f"{mirror}: {exc}")
            else:
                raise CnnzooError(
                    f"Could not download {filename} for {info.display_name} into {raw_dir} "
                    f"({'; '.join(errors) or 'no mirrors'}); put the official files there by hand, or {_FIX}."
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _as_device(device: DeviceLike) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise CnnzooError(f"Unknown device {device!r}; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CnnzooError(f"Device {device!r} was asked for but CUDA is not available here; use 'cpu'.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CnnzooError(f"Device {device!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s).")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise CnnzooError(f"Device {device!r} was asked for but MPS is not available here; use 'cpu'.")
    return dev


# --------------------------------------------------------------------------------------------
# Public containers and loaders
# --------------------------------------------------------------------------------------------


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
        dev = _as_device(device)
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
    split = _check_split(split)
    dev = _as_device(device)
    root_path = resolve_data_root(root)
    _check_root(root_path, explicit=(root is not None and str(root) != "") or bool(os.environ.get("CNNZOO_DATA")))
    raw_dir, found = _find_files(root_path, info, split)
    if raw_dir is None:
        missing = found
        target = _raw_dir_candidates(root_path, info)[0]
        hint = (
            f"set CNNZOO_DATA (or --data-dir) to the folder that contains {info.folder}/raw/, "
            f"or put the official files in {target}"
        )
        if not download:
            raise CnnzooError(
                f"{info.display_name} {split} data not found: {target} lacks {', '.join(missing)}; "
                f"{hint}, or allow downloading."
            )
        if not _writable_dir(target):
            raise CnnzooError(
                f"{info.display_name} {split} data not found and cannot be downloaded: {target} lacks "
                f"{', '.join(missing)} and is not writable; {hint}."
            )
        _download(info, target, split)
        raw_dir, found = _find_files(root_path, info, split)
        if raw_dir is None:  # pragma: no cover - _download raises first
            raise CnnzooError(f"{info.display_name} {split} data is still missing from {target} after downloading.")
    (images_path, images_md5), (labels_path, labels_md5) = found
    key = (info.name, split, str(images_path.resolve()), str(labels_path.resolve()), (images_md5, labels_md5))
    key += tuple(_stat_key(p) for p in (images_path, labels_path))
    images, labels = _decode_split_cached(key)
    return DataSplit(images, labels, info.classes, info.name, split).to(dev)


def _check_root(root: Path, explicit: bool) -> None:
    """A data root that is a file, or a named one that does not exist, is a mistake to report: creating
    a folder tree under a mistyped --data-dir and downloading into it would hide the typo."""
    if root.exists() and not root.is_dir():
        raise CnnzooError(f"The data folder {root} is a file, not a folder; point --data-dir (or CNNZOO_DATA) at "
                          "the folder that contains FashionMNIST/ and MNIST/.")
    if explicit and not root.exists():
        raise CnnzooError(f"The data folder {root} does not exist; check the spelling of --data-dir (or "
                          "CNNZOO_DATA), or create the folder first to download the data into it.")


def _stat_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


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
    dev = _as_device(device)
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
