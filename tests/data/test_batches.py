"""BatchIterator and augmentation."""

import pytest
import torch

from cnnzoo.data import (
    DATASETS,
    Augment,
    BatchIterator,
    DataSplit,
    load_split,
    preprocess,
)
from cnnzoo.errors import CnnzooError


def toy_split(n=103, size=28):
    """Images whose pixels are random, labels = sample index (to track samples)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return DataSplit(images, torch.arange(n), tuple(str(i) for i in range(10)), "toy", "train")


def epoch_labels(it, epoch):
    it.set_epoch(epoch)
    return torch.cat([y for _, y in it])


@pytest.mark.parametrize("batch_size, drop_last", [(10, False), (16, False), (103, False), (200, False), (10, True)])
def test_every_index_once_per_epoch(batch_size, drop_last):
    split = toy_split()
    it = BatchIterator(split, batch_size, shuffle=True, seed=1, drop_last=drop_last)
    batches = [(x, y) for x, y in it]
    assert len(batches) == len(it)
    seen = torch.cat([y for _, y in batches])
    if drop_last:
        assert len(seen) == (103 // batch_size) * batch_size and len(set(seen.tolist())) == len(seen)
        assert all(len(y) == batch_size for _, y in batches)
    else:
        assert sorted(seen.tolist()) == list(range(103))
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and y.dtype == torch.int64
    assert torch.equal(x, split.images[y].float() / 255)


def test_epochs_differ_and_repeat_exactly():
    split = toy_split()
    it = BatchIterator(split, 10, seed=5, augment=Augment(crop_padding=2, hflip=True))
    e0, e1 = epoch_labels(it, 0), epoch_labels(it, 1)
    assert not torch.equal(e0, e1)
    fresh = BatchIterator(split, 10, seed=5, augment=Augment(crop_padding=2, hflip=True))
    fresh.set_epoch(1)
    it.set_epoch(1)
    for (xa, ya), (xb, yb) in zip(it, fresh, strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert not torch.equal(epoch_labels(BatchIterator(split, 10, seed=6), 0), e0)


def test_global_rng_untouched():
    state = torch.get_rng_state()
    it = BatchIterator(toy_split(), 10, seed=0, augment=Augment(crop_padding=4, hflip=True))
    for _ in it:
        pass
    assert torch.equal(state, torch.get_rng_state())


def test_no_shuffle_is_in_order():
    assert epoch_labels(BatchIterator(toy_split(), 7, shuffle=False), 3).tolist() == list(range(103))


@pytest.mark.parametrize("n, drop_last", [(103, False), (104, False), (103, True)])
def test_sharding_two_ranks(n, drop_last):
    split = toy_split(n)
    ranks = [BatchIterator(split, 8, seed=2, world_size=2, rank=r, drop_last=drop_last) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    shards = [epoch_labels(it, 4) for it in ranks]
    if drop_last:
        assert len(shards[0]) == len(shards[1]) == (n // 2 // 8) * 8
        assert not set(shards[0].tolist()) & set(shards[1].tolist())
    else:
        assert len(shards[0]) == len(shards[1]) == -(-n // 2)
        assert sorted(set(torch.cat(shards).tolist())) == list(range(n))
        if n % 2 == 0:
            assert not set(shards[0].tolist()) & set(shards[1].tolist())
    # step i of the two ranks together is batch i of one process with the global batch (16), split in halves
    whole = BatchIterator(split, 1000, seed=2).epoch_indices(4)
    padded = whole.repeat(2)[: 2 * (n // 2 if drop_last else -(-n // 2))]
    steps = list(zip(*([y for _, y in it] for it in ranks)))
    assert len(steps) == len(ranks[0])
    for i, (first, second) in enumerate(steps):
        assert len(first) == len(second)
        assert torch.equal(torch.cat([first, second]), padded[16 * i: 16 * i + 2 * len(first)])


def test_bad_arguments():
    split = toy_split()
    for kwargs in [dict(batch_size=0), dict(batch_size=4, rank=2, world_size=2), dict(batch_size=4, world_size=0)]:
        with pytest.raises(CnnzooError):
            BatchIterator(split, **kwargs)
    with pytest.raises(CnnzooError):
        Augment(crop_padding=-1)
    with pytest.raises(CnnzooError):
        BatchIterator(split, 4, normalize=(0.5, 0.0))
    with pytest.raises(CnnzooError):
        BatchIterator(split, 4, input_size=(0, 4))


def test_flip_correctness():
    split = toy_split(64)
    it = BatchIterator(split, 64, seed=0, augment=Augment(hflip=True))
    x, y = next(iter(it))
    orig = split.images[y].float() / 255
    same = (x == orig).flatten(1).all(1)
    flipped = (x == orig.flip(-1)).flatten(1).all(1)
    assert torch.all(same | flipped)
    assert same.sum() > 10 and flipped.sum() > 10


def test_crop_stays_within_padding():
    pad = 3
    split = toy_split(64)
    it = BatchIterator(split, 64, seed=0, augment=Augment(crop_padding=pad))
    x, y = next(iter(it))
    orig = split.images[y].float() / 255
    padded = torch.nn.functional.pad(orig, (pad, pad, pad, pad))
    matched = torch.zeros(64, dtype=torch.bool)
    shifts = set()
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            ok = (padded[..., dy : dy + 28, dx : dx + 28] == x).flatten(1).all(1)
            if ok.any():
                shifts.add((dy, dx))
            matched |= ok
    assert matched.all()  # every output is the original shifted by at most `pad` pixels
    assert len(shifts) > 10  # and the offsets vary per sample


def test_order_augment_then_resize_then_normalize():
    split = toy_split(16)
    mean, std = 0.3, 0.4
    it = BatchIterator(split, 16, shuffle=False, seed=0, input_size=56, normalize=(mean, std),
                       augment=Augment(hflip=True), dtype=torch.float64, channels_last=True)
    x, y = next(iter(it))
    assert x.shape == (16, 1, 56, 56) and x.dtype == torch.float64
    assert x.is_contiguous(memory_format=torch.channels_last)
    ref = preprocess(split.images[y], 56, (mean, std)).double()
    ref_flipped = preprocess(split.images[y].flip(-1), 56, (mean, std)).double()
    per = torch.minimum((x - ref).abs().flatten(1).amax(1), (x - ref_flipped).abs().flatten(1).amax(1))
    assert per.max() < 1e-5


def test_real_data_epoch(data_root):
    split = load_split("mnist", "test", root=data_root)
    it = BatchIterator(split, 256, seed=0, normalize=DATASETS["mnist"].normalize, augment=Augment(2, True))
    assert len(it) == 40
    total = 0
    for x, y in it:
        assert x.shape[1:] == (1, 28, 28) and torch.isfinite(x).all()
        total += len(y)
    assert total == 10000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_stay_on_device(data_root):
    split = load_split("fashion-mnist", "test", root=data_root, device="cuda")
    it = BatchIterator(split, 128, seed=0, input_size=224, normalize=(0.286, 0.353), augment=Augment(4, True),
                       dtype=torch.bfloat16, channels_last=True)
    x, y = next(iter(it))
    assert x.device.type == "cuda" and y.device.type == "cuda" and x.dtype == torch.bfloat16
    it2 = BatchIterator(split, 128, seed=0, input_size=224, normalize=(0.286, 0.353), augment=Augment(4, True),
                        dtype=torch.bfloat16, channels_last=True)
    assert torch.equal(next(iter(it2))[0], x)
    assert sorted(torch.cat([y for _, y in BatchIterator(split, 1000, seed=0)]).cpu().tolist()) == sorted(split.labels.cpu().tolist())


def test_a_batch_is_make_batch_of_its_slice_of_the_epoch_plan(data_root):
    # The training step compiles or captures `make_batch` with the plan's slices as inputs: it must
    # give exactly what iterating gives, batch for batch, the last partial one included.
    from cnnzoo.data import load_data

    data = load_data("fashion-mnist", root=data_root, device="cpu", limit_train=200, limit_test=10)
    batches = BatchIterator(data.train, 64, seed=5, augment=Augment(crop_padding=2, hflip=True),
                            normalize=(0.3, 0.35), input_size=32)
    batches.set_epoch(3)
    plan = batches.epoch_plan(3)
    for b, (x, y) in enumerate(batches):
        made_x, made_y = batches.make_batch(*batches.batch_draws(plan, b))
        assert torch.equal(made_x, x) and torch.equal(made_y, y) and len(y) == batches.batch_sizes()[b]
    assert batches.batch_sizes() == [64, 64, 64, 8]
