"""Fixtures for the data tests; `data_root` (tests/conftest.py) fails, never skips, without the real data."""

import shutil

import pytest

from cnnzoo.data import DATASETS


@pytest.fixture
def copied_root(tmp_path, data_root):
    """A writable copy of the Fashion-MNIST *test* files (small) in torchvision's layout, to damage."""
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in DATASETS["fashion-mnist"].files("test"):
        shutil.copyfile(data_root / "FashionMNIST" / "raw" / name, raw / name)
    return tmp_path / "root"
