"""Damaged, missing and hostile data files: always one CnnzooError naming the file."""

import gzip
import shutil

import numpy as np
import pytest

import cnnzoo.data.files as files_mod
from cnnzoo.data import DATASETS, load_split
from cnnzoo.errors import CnnzooError

IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"


def test_copied_root_loads(copied_root):
    s = load_split("fashion-mnist", "test", root=copied_root, download=False)
    assert s.labels[:5].tolist() == [9, 2, 1, 1, 6]


def test_truncated_gz(copied_root):
    path = copied_root / "FashionMNIST" / "raw" / IMAGES
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CnnzooError) as err:
        load_split("fashion-mnist", "test", root=copied_root, download=False)
    msg = str(err.value)
    assert str(path) in msg and "checksum" in msg and "truncated" in msg
    assert "\n" not in msg


def test_bad_gzip(copied_root):
    path = copied_root / "FashionMNIST" / "raw" / LABELS
    data = bytearray(path.read_bytes())
    data[100:110] = b"\xff" * 10  # damage the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(CnnzooError) as err:
        load_split("fashion-mnist", "test", root=copied_root, download=False)
    msg = str(err.value)
    assert str(path) in msg and "checksum" in msg and ("damaged gzip" in msg or "truncated" in msg)


def test_not_gzip(copied_root):
    path = copied_root / "FashionMNIST" / "raw" / LABELS
    path.write_bytes(b"this is not a gzip file at all")
    with pytest.raises(CnnzooError, match="not a gzip file") as err:
        load_split("fashion-mnist", "test", root=copied_root, download=False)
    assert str(path) in str(err.value)


def test_wrong_magic_in_gz(copied_root):
    path = copied_root / "FashionMNIST" / "raw" / LABELS
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[3] = 3  # 2049 -> 2051
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(CnnzooError, match="wrong magic number 2051") as err:
        load_split("fashion-mnist", "test", root=copied_root, download=False)
    assert str(path) in str(err.value) and "checksum" in str(err.value)


def test_valid_but_different_gz_fails_checksum(copied_root):
    path = copied_root / "FashionMNIST" / "raw" / LABELS
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1))
    with pytest.raises(CnnzooError, match="differ from the official") as err:
        load_split("fashion-mnist", "test", root=copied_root, download=False)
    assert str(path) in str(err.value)


def test_extracted_files_are_checked_against_the_official_md5(copied_root, idx_bytes):
    """Without the .gz, an extracted IDX file is used only if it is the official file's decompressed
    bytes: wrong labels in a well-formed file fail the checksum (doctor once said "verified" over them)."""
    raw = copied_root / "FashionMNIST" / "raw"
    labels = gzip.decompress((raw / LABELS).read_bytes())
    (raw / LABELS).unlink()
    plain = raw / LABELS[:-3]
    plain.write_bytes(labels)
    assert load_split("fashion-mnist", "test", root=copied_root, download=False).labels[0] == 9

    swapped = bytearray(labels)
    swapped[8:8 + 2000] = bytes((b + 1) % 10 for b in swapped[8:8 + 2000])  # 2,000 wrong but valid labels
    plain.write_bytes(bytes(swapped))
    with pytest.raises(CnnzooError, match="fails its checksum .*differ from the official") as err:
        load_split("fashion-mnist", "test", root=copied_root, download=False)
    assert str(plain) in str(err.value) and "\n" not in str(err.value)

    plain.write_bytes(idx_bytes(np.frombuffer(labels[8:], dtype=np.uint8)[:9999]))
    with pytest.raises(CnnzooError, match="fails its checksum"):
        load_split("fashion-mnist", "test", root=copied_root, download=False)

    plain.write_bytes(labels[:-5])
    with pytest.raises(CnnzooError, match="fails its checksum .*truncated") as err:
        load_split("fashion-mnist", "test", root=copied_root, download=False)
    assert str(plain) in str(err.value)


def test_every_official_file_has_its_extracted_md5():
    for info in DATASETS.values():
        for split in ("train", "test"):
            for _, md5 in info.files(split):
                assert md5 in files_mod.EXTRACTED_MD5


def test_missing_files_offline(tmp_path):
    with pytest.raises(CnnzooError) as err:
        load_split("fashion-mnist", "train", root=tmp_path, download=False)
    msg = str(err.value)
    folder = tmp_path / "FashionMNIST" / "raw"
    assert str(folder) in msg
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "CNNZOO_DATA" in msg and "--data-dir" in msg
    assert not (tmp_path / "FashionMNIST").exists()  # offline means: create nothing


def test_one_missing_file(copied_root):
    (copied_root / "FashionMNIST" / "raw" / LABELS).unlink()
    with pytest.raises(CnnzooError, match=LABELS) as err:
        load_split("fashion-mnist", "test", root=copied_root, download=False)
    assert IMAGES not in str(err.value)  # only the file that is missing is named


def test_unwritable_root_cannot_download(tmp_path):
    # A file where the data set's folder would go: unwritable even for root, who ignores permissions.
    (tmp_path / "MNIST").write_text("")
    with pytest.raises(CnnzooError, match="not writable") as err:
        load_split("mnist", "test", root=tmp_path, download=True)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value)


def test_download_uses_torchvision_and_mirrors(tmp_path, data_root, monkeypatch):
    calls = []

    def fake_download_url(url, root, filename=None, md5=None, max_redirect_hops=3):
        calls.append(url)
        if url.startswith(DATASETS["mnist"].mirrors[0]):
            raise OSError("network is unreachable")
        shutil.copyfile(data_root / "MNIST" / "raw" / filename, f"{root}/{filename}")

    monkeypatch.setattr(files_mod, "download_url", fake_download_url)
    s = load_split("mnist", "test", root=tmp_path, download=True)
    assert s.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == [IMAGES, LABELS]
    assert len(calls) == 4  # first mirror fails, second succeeds, for both files


def test_failed_download_is_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(url, root, filename=None, md5=None, max_redirect_hops=3):
        with open(f"{root}/{filename}", "wb") as f:
            f.write(b"partial")
        raise OSError("network is unreachable")

    monkeypatch.setattr(files_mod, "download_url", offline)
    with pytest.raises(CnnzooError, match="Could not download t10k-images-idx3-ubyte.gz") as err:
        load_split("fashion-mnist", "test", root=tmp_path, download=True)
    assert "network is unreachable" in str(err.value)
    assert list((tmp_path / "FashionMNIST" / "raw").iterdir()) == []


def test_a_mistyped_data_dir_is_named_and_no_folder_tree_is_created(tmp_path):
    typo = tmp_path / "dta"
    with pytest.raises(CnnzooError, match=f"data folder {typo} does not exist.*spelling"):
        load_split("mnist", "test", root=typo, download=True)
    assert not typo.exists()


def test_a_data_dir_that_is_a_file_is_called_a_file(tmp_path):
    file = tmp_path / "data.txt"
    file.write_text("not a folder")
    with pytest.raises(CnnzooError, match=f"{file} is a file, not a folder"):
        load_split("mnist", "test", root=file, download=True)


def test_root_may_point_at_the_dataset_folder(data_root):
    s = load_split("mnist", "test", root=data_root / "MNIST", download=False)
    assert len(s) == 10000
    s = load_split("mnist", "test", root=data_root / "MNIST" / "raw", download=False)
    assert len(s) == 10000


def test_repeated_loads_are_cached(data_root):
    a = load_split("fashion-mnist", "test", root=data_root)
    b = load_split("fashion-mnist", "test", root=data_root)
    assert a.images.data_ptr() == b.images.data_ptr()
