"""Loading whole splits into DataSplit / DataBundle, and carving the validation split."""

import pytest
import torch

from cnnzoo.data import (
    DATASETS,
    BatchIterator,
    DataBundle,
    DataSplit,
    load_data,
    load_split,
)
from cnnzoo.device import resolve_device
from cnnzoo.errors import CnnzooError


@pytest.mark.parametrize(
    "name, mean, first_test",
    [("fashion-mnist", 0.2860, [9, 2, 1, 1, 6]), ("mnist", 0.1307, [7, 2, 1, 0, 4])],
)
def test_real_splits(data_root, name, mean, first_test):
    train = load_split(name, "train", root=data_root, download=False)
    test = load_split(name, "test", root=data_root, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.labels.shape == (60000,) and test.labels.shape == (10000,)
    assert test.labels[:5].tolist() == first_test
    pixel_mean = train.images.double().mean().item() / 255
    pixel_std = train.images.double().std().item() / 255
    assert pixel_mean == pytest.approx(mean, abs=5e-5)
    assert pixel_mean == pytest.approx(DATASETS[name].mean, abs=5e-5)
    assert pixel_std == pytest.approx(DATASETS[name].std, abs=5e-5)
    assert int(train.labels.min()) == 0 and int(train.labels.max()) == 9
    assert len(train) == 60000 and train.device == torch.device("cpu")
    assert train.dataset == name and train.split == "train" and test.split == "test"


def test_load_data_val_split_and_limits(data_root):
    b = load_data("fashion-mnist", root=data_root, val_split=0.1, seed=3)
    assert isinstance(b, DataBundle) and b.info is DATASETS["fashion-mnist"]
    assert len(b.train) == 54000 and len(b.val) == 6000 and len(b.test) == 10000
    assert b.val.split == "val" and b.train.split == "train"
    # disjoint and covering: compare image bytes+labels via indices is impossible, so redo the carve
    again = load_data("fashion-mnist", root=data_root, val_split=0.1, seed=3)
    assert torch.equal(again.val.images, b.val.images) and torch.equal(again.val.labels, b.val.labels)
    other = load_data("fashion-mnist", root=data_root, val_split=0.1, seed=4)
    assert not torch.equal(other.val.labels, b.val.labels)
    full = load_split("fashion-mnist", "train", root=data_root)
    assert torch.equal(torch.sort(torch.cat([b.train.labels, b.val.labels])).values, torch.sort(full.labels).values)

    none = load_data("mnist", root=data_root, limit_train=500, limit_test=200, seed=1)
    assert none.val is None and len(none.train) == 500 and len(none.test) == 200
    assert none.train.images.dtype == torch.uint8
    small = load_data("mnist", root=data_root, limit_train=1000, val_split=100, seed=1)
    assert len(small.train) == 900 and len(small.val) == 100


def test_load_data_stratified(data_root):
    b = load_data("mnist", root=data_root, val_split=0.2, seed=0, stratify=True)
    full = torch.bincount(load_split("mnist", "train", root=data_root).labels).double()
    val = torch.bincount(b.val.labels).double()
    assert len(b.val) == 12000
    assert torch.all((val - full * 0.2).abs() <= 1)


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.1", 60000, True])
def test_load_data_bad_val_split(data_root, bad):
    with pytest.raises(CnnzooError, match="val_split"):
        load_data("mnist", root=data_root, val_split=bad)


@pytest.mark.parametrize("bad", [0, -5, 2.5])
def test_load_data_bad_limits(data_root, bad):
    with pytest.raises(CnnzooError, match="limit_train"):
        load_data("mnist", root=data_root, limit_train=bad)


def test_datasplit_methods():
    images = torch.arange(5 * 4, dtype=torch.uint8).reshape(5, 1, 2, 2)
    s = DataSplit(images, torch.arange(5), ("a",) * 5, "toy", "train")
    assert len(s) == 5 and s.to("cpu") is s
    sub = s.subset([4, 0])
    assert sub.labels.tolist() == [4, 0] and torch.equal(sub.images[0], images[4])
    with pytest.raises(ValueError):
        DataSplit(images.float(), torch.arange(5), (), "toy", "train")


def test_bad_device():
    with pytest.raises(CnnzooError, match="device"):
        DataSplit(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64), (), "t", "t").to("warp-drive")


def _toy_split() -> DataSplit:
    return DataSplit(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64), (), "t", "t")


@pytest.mark.parametrize("name", ["auto", "cpu", "mps", "cuda", "cuda:7", "warp-drive", None])
def test_data_accepts_exactly_the_devices_the_runtime_accepts(name, monkeypatch):
    # Data used to take "mps" (and refuse "auto") while the runtime did the opposite.
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    try:
        want = resolve_device(name)
    except CnnzooError as error:
        with pytest.raises(CnnzooError) as got:
            _toy_split().to(name)
        assert str(got.value) == str(error)
    else:
        assert _toy_split().to(name).device == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_data_on_cuda(data_root):
    b = load_data("fashion-mnist", root=data_root, device="cuda", limit_train=1000)
    assert b.train.device.type == "cuda" and b.train.images.dtype == torch.uint8


def test_keras_validation_split_holds_out_the_last_12000_unshuffled(data_root):
    data = load_data("fashion-mnist", root=data_root, val_split=0.2, val_holdout="last", seed=5)
    assert torch.equal(data.val.source_indices(), torch.arange(48_000, 60_000))
    assert torch.equal(data.train.source_indices(), torch.arange(48_000))
    full = load_split("fashion-mnist", "train", root=data_root)
    assert torch.equal(data.val.images, full.images[48_000:])
    assert BatchIterator(data.train, 256).__len__() == 188  # Keras' steps per epoch


def test_keras_validation_split_rounds_as_keras(data_root):
    # Keras keeps floor(n * (1 - split)) for training: 409 of 512 (a plain round would keep 410).
    data = load_data("fashion-mnist", root=data_root, val_split=0.2, val_holdout="last", limit_train=512)
    assert (len(data.train), len(data.val)) == (409, 103)
    with pytest.raises(CnnzooError, match="val_holdout must be one of random, last"):
        load_data("fashion-mnist", root=data_root, val_split=0.2, val_holdout="first")


def test_a_split_on_the_mac_gpu_is_where_mps_asks_for_it(monkeypatch):
    # MPS tensors report mps:0 and the resolver says mps: a split already there must not be copied again.
    from cnnzoo.data.splits import _same_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert _same_device(resolve_device("mps"), torch.device("mps", 0))
    assert not _same_device(resolve_device("mps"), torch.device("cpu"))
