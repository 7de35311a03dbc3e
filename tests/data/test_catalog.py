"""The catalogue: data set names and aliases, classes, statistics, and where the data root is."""

from pathlib import Path

import pytest
import torch

from cnnzoo.data import DATASETS, canonical_dataset_name, get_dataset_info, load_split, resolve_data_root
from cnnzoo.errors import CnnzooError

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_fashion_classes_and_balance(data_root):
    train = load_split("fashion-mnist", "train", root=data_root)
    assert train.classes == FASHION_CLASSES == DATASETS["fashion-mnist"].classes
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    test = load_split("fashion-mnist", "test", root=data_root)
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_mnist_class_counts_and_names(data_root):
    train = load_split("mnist", "train", root=data_root)
    assert torch.bincount(train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert train.classes[0] == "0 - zero" and len(train.classes) == 10


def test_env_var_is_the_default_root(data_root, monkeypatch):
    monkeypatch.setenv("CNNZOO_DATA", str(data_root))
    assert resolve_data_root() == data_root
    assert load_split("mnist", "test").labels[:3].tolist() == [7, 2, 1]


def test_resolve_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNZOO_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("CNNZOO_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "cnnzoo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_root() == Path.home() / ".cache" / "cnnzoo"


@pytest.mark.parametrize("alias", ["fashion-mnist", "fashion_mnist", "fashionmnist", "FashionMNIST", "Fashion-MNIST"])
def test_aliases(alias):
    assert canonical_dataset_name(alias) == "fashion-mnist"
    assert get_dataset_info(alias) is DATASETS["fashion-mnist"]


def test_unknown_dataset_lists_names():
    with pytest.raises(CnnzooError, match="fashion-mnist, mnist"):
        canonical_dataset_name("cifar10")
    with pytest.raises(CnnzooError, match="split"):
        load_split("mnist", "validation")
