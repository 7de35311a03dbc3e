"""Fixtures for the data tests; `data_root` (tests/conftest.py) fails, never skips, without the real data."""

import shutil
import struct

import numpy as np
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


def _idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


@pytest.fixture
def idx_bytes():
    """``idx_bytes(array)``: the uncompressed IDX file of a uint8 array, as the official files hold it."""
    return _idx_bytes
