"""Fixtures for the data tests: the real files come from $CNNZOO_DATA (set by .ci/run).

A missing data set FAILS these tests; it never skips them.
"""

import os
import shutil
from pathlib import Path

import pytest

from cnnzoo.data import DATASETS


@pytest.fixture(scope="session")
def data_root() -> Path:
    value = os.environ.get("CNNZOO_DATA")
    if not value:
        pytest.fail("CNNZOO_DATA is not set; point it at the folder holding FashionMNIST/raw and MNIST/raw "
                    "(e.g. CNNZOO_DATA=/work/shared/data).", pytrace=False)
    root = Path(value)
    missing = [
        str(root / info.folder / "raw" / name)
        for info in DATASETS.values()
        for split in ("train", "test")
        for name, _ in info.files(split)
        if not (root / info.folder / "raw" / name).is_file()
    ]
    if missing:
        pytest.fail(f"CNNZOO_DATA={root} lacks the data files: {', '.join(missing)}", pytrace=False)
    return root


@pytest.fixture
def copied_root(tmp_path, data_root):
    """A writable copy of the Fashion-MNIST *test* files (small) in torchvision's layout, to damage."""
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in DATASETS["fashion-mnist"].files("test"):
        shutil.copyfile(data_root / "FashionMNIST" / "raw" / name, raw / name)
    return tmp_path / "root"
