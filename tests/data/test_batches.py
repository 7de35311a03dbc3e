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
    batches = BatchIterator(data.train, 64, seed=5, augment=Augment(crop_padding=2, hflip=True, random_erasing=0.5),
                            normalize=(0.3, 0.35), input_size=32)
    batches.set_epoch(3)
    plan = batches.epoch_plan(3)
    for b, (x, y) in enumerate(batches):
        made_x, made_y = batches.make_batch(*batches.batch_draws(plan, b))
        assert torch.equal(made_x, x) and torch.equal(made_y, y) and len(y) == batches.batch_sizes()[b]
    assert batches.batch_sizes() == [64, 64, 64, 8]


# -- random erasing -------------------------------------------------------------------------------

def _paper_erasing(rng, height, width, probability):
    """Zhong et al.'s RandomErasing (their transforms.py), one image at a time with Python's random,
    with the aspect drawn log-uniformly as cnnzoo does: the box (top, left, h, w), or None."""
    import math
    import random

    assert isinstance(rng, random.Random)
    if rng.uniform(0, 1) >= probability:
        return None
    for _ in range(100):
        area = rng.uniform(0.02, 0.4) * height * width
        aspect = math.exp(rng.uniform(math.log(0.3), -math.log(0.3)))
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if w < width and h < height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return None


def _erased_boxes(erased):
    """(B, H, W) bool masks -> per image None or (top, left, h, w), asserting each mask is one filled box."""
    boxes = []
    for mask in erased:
        if not mask.any():
            boxes.append(None)
            continue
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        top, left, h, w = rows[0].item(), cols[0].item(), len(rows), len(cols)
        assert rows[-1] - top + 1 == h and cols[-1] - left + 1 == w and mask.sum() == h * w  # a solid rectangle
        boxes.append((top, left, h, w))
    return boxes


def _erase_statistics(boxes, height, width):
    import math

    done = [b for b in boxes if b is not None]
    areas = torch.tensor([h * w / (height * width) for _, _, h, w in done], dtype=torch.float64)
    log_aspects = torch.tensor([math.log(h / w) for _, _, h, w in done], dtype=torch.float64)
    return len(done) / len(boxes), areas, log_aspects


def test_random_erasing_statistics_match_the_paper_algorithm():
    import random

    from cnnzoo.data.batches import draw_erasing, random_erase

    n, height, width, p = 20_000, 28, 28, 0.5
    x = torch.zeros(n, 1, height, width, dtype=torch.uint8)
    draws, _ = draw_erasing(n, 1, height, width, torch.Generator().manual_seed(0), torch.device("cpu"))
    out = random_erase(x, p, draws, torch.full_like(x, 255))  # erased pixels are exactly the 255s
    boxes = _erased_boxes(out[:, 0] == 255)
    fraction, areas, log_aspects = _erase_statistics(boxes, height, width)
    rng = random.Random(1)
    reference = [_paper_erasing(rng, height, width, p) for _ in range(n)]
    ref_fraction, ref_areas, ref_log_aspects = _erase_statistics(reference, height, width)
    # p of the images, as the paper's per-image loop gives (binomial sd 0.0035)
    assert abs(fraction - p) < 0.015 and abs(ref_fraction - p) < 0.015
    # Every box is what rounding a real area in [0.02, 0.4] and aspect in [0.3, 1/0.3] to whole sides gives.
    for _, _, h, w in (b for b in boxes if b is not None):
        assert (h - 0.5) * (w - 0.5) <= 0.4 * height * width and (h + 0.5) * (w + 0.5) >= 0.02 * height * width
        assert (h - 0.5) / (w + 0.5) <= 1 / 0.3 and (h + 0.5) / (w - 0.5) >= 0.3
        assert h < height and w < width
    assert areas.min() >= 0.015 and areas.max() <= 0.45
    # The same distribution as the reference loop: mean and spread of area and aspect (sd of a mean ~0.001-0.01).
    assert abs(areas.mean() - ref_areas.mean()) < 0.006 and abs(areas.std() - ref_areas.std()) < 0.006
    assert abs(log_aspects.mean() - ref_log_aspects.mean()) < 0.03
    assert abs(log_aspects.std() - ref_log_aspects.std()) < 0.03
    # Boxes are spread over the image: every pixel is erased in some image.
    assert (out[:, 0] == 255).any(0).all()


def test_random_erasing_probability_extremes_and_fill():
    from cnnzoo.data.batches import draw_erasing, random_erase

    # Float images at -1 and a fill in [0, 1): a pixel changed exactly where it was erased.
    x = torch.full((500, 3, 20, 24), -1.0)
    draws, fill = draw_erasing(500, 3, 20, 24, torch.Generator().manual_seed(3), torch.device("cpu"), torch.float32)
    assert torch.equal(random_erase(x, 0.0, draws, fill), x)
    everything = random_erase(x, 1.0, draws, fill)
    changed = everything != x
    assert changed.flatten(1).any(1).float().mean() > 0.99  # all but images no candidate box fits
    assert torch.equal(everything[changed], fill[changed])  # erased pixels are the fill's, all channels alike
    assert torch.equal(changed.all(1), changed.any(1))
    assert 0 <= fill.min() and fill.max() < 1 and fill.std() > 0.25  # uniform [0, 1): sd 0.289
    uint8_fill = draw_erasing(500, 1, 20, 24, torch.Generator().manual_seed(3), torch.device("cpu"))[1]
    assert uint8_fill.dtype == torch.uint8 and uint8_fill.unique().numel() == 256  # every grey level


def test_random_erasing_reads_nothing_back_to_the_host():
    # On the meta device any data-dependent Python decision (.item(), bool(), nonzero) would raise, so
    # this proves the operation can be captured in a CUDA graph as it stands.
    from cnnzoo.data.batches import draw_erasing, random_erase

    x = torch.empty(8, 1, 28, 28, dtype=torch.uint8, device="meta")
    draws = torch.empty(8, draw_erasing(1, 1, 2, 2, torch.Generator(), torch.device("cpu"))[0].shape[1], device="meta")
    assert random_erase(x, 0.5, draws, torch.empty_like(x)).shape == x.shape


def test_erasing_is_a_pure_function_of_seed_and_epoch_and_keeps_crops_and_flips():
    split = toy_split(100)  # even: two ranks share the unpadded permutation of one process
    erasing = Augment(crop_padding=2, hflip=True, random_erasing=0.5)

    def epoch(it, e):
        it.set_epoch(e)
        return torch.cat([x for x, _ in it])

    straight = BatchIterator(split, 10, seed=5, augment=erasing)
    first, second = epoch(straight, 0), epoch(straight, 1)
    resumed = BatchIterator(split, 10, seed=5, augment=erasing)  # a resumed run starts at epoch 1
    assert torch.equal(epoch(resumed, 1), second) and not torch.equal(first, second)
    # Other batch sizes and two ranks see the same pixels per sample: draws follow the shared permutation.
    assert torch.equal(epoch(BatchIterator(split, 32, seed=5, augment=erasing), 1), second)
    whole = epoch(BatchIterator(split, 10, seed=5, augment=erasing, shuffle=False), 1)
    for rank in range(2):  # step i of rank r holds samples 10i + 5r .. 10i + 5r + 4 of the global batch order
        shard = epoch(BatchIterator(split, 5, seed=5, augment=erasing, rank=rank, world_size=2, shuffle=False), 1)
        for step in range(10):
            assert torch.equal(shard[5 * step: 5 * step + 5], whole[10 * step + 5 * rank: 10 * step + 5 * rank + 5])
    # Turning erasing on changes only the erased boxes: crops and flips come from their own stream.
    plain = epoch(BatchIterator(split, 10, seed=5, augment=Augment(crop_padding=2, hflip=True)), 1)
    differs = (plain != second)[:, 0]
    assert differs.any()
    for mask in differs[differs.flatten(1).any(1)]:  # each image's changed pixels lie within one erasable box
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert h < 28 and w < 28 and (h - 0.5) * (w - 0.5) <= 0.4 * 28 * 28


def test_random_erasing_is_checked():
    with pytest.raises(CnnzooError, match="random_erasing must be a probability"):
        Augment(random_erasing=1.5)
    with pytest.raises(CnnzooError, match="random_erasing must be a probability"):
        Augment(random_erasing=True)
    assert Augment(random_erasing=0.5).enabled and not Augment(random_erasing=0.0).enabled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_random_erasing_replays_in_a_cuda_graph():
    # A captured graph replays its kernels on new data in its static inputs; a host read-back would
    # fail the capture. Replayed on fresh randomness, it must equal the eager result.
    from cnnzoo.data.batches import draw_erasing, random_erase

    device = torch.device("cuda")
    x = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8, device=device)
    draws, fill = draw_erasing(256, 1, 28, 28, torch.Generator(device).manual_seed(0), device)
    static = [x.clone(), draws.clone(), fill.clone()]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graphs asks
        random_erase(static[0], 0.5, static[1], static[2])
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = random_erase(static[0], 0.5, static[1], static[2])
    new_draws, new_fill = draw_erasing(256, 1, 28, 28, torch.Generator(device).manual_seed(1), device)
    static[1].copy_(new_draws)
    static[2].copy_(new_fill)
    graph.replay()
    assert torch.equal(out, random_erase(x, 0.5, new_draws, new_fill))
