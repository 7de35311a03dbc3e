"""Fashion-MNIST and MNIST as cnnzoo knows them: names and aliases, classes, statistics, the files
torchvision lists for them, and the data root they live under.

torchvision's dataset classes supply the file names, the official MD5s, the download mirrors and
the class names; nothing here touches the disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from torchvision import datasets as tv_datasets

from cnnzoo.errors import CnnzooError

__all__ = ["DATASETS", "SPLITS", "DatasetInfo", "canonical_dataset_name", "get_dataset_info", "resolve_data_root"]

PathLike = Union[str, "os.PathLike[str]"]

SPLITS = ("train", "test")


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
        return self.train_size if check_split(split) == "train" else self.test_size

    @property
    def mirrors(self) -> tuple[str, ...]:
        return tuple(self.torchvision_class.mirrors)

    def files(self, split: str) -> tuple[tuple[str, str], tuple[str, str]]:
        """``((images_file, md5), (labels_file, md5))`` of a split, from torchvision's list."""
        split = check_split(split)
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


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise CnnzooError(f"Unknown split {split!r}; choose one of: {', '.join(SPLITS)}.")
    return split


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
