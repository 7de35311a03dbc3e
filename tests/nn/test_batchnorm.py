"""The hand-written batch norm against torch.nn.BatchNorm1d/2d, in float64 to 1e-10."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.nn import norm_layers
from cnnzoo.nn.batchnorm import BatchNorm1d, BatchNorm2d

TOL = dict(rtol=1e-10, atol=1e-10)
F64 = torch.float64


def _random_shapes(seed: int, count: int, rank: int) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    shapes = []
    for _ in range(count):
        if rank == 2:
            shapes.append((rng.randint(2, 33), rng.randint(1, 9)))
        else:
            shapes.append((rng.randint(1, 5), rng.randint(1, 6), rng.randint(1, 7), rng.randint(2, 7)))
    return shapes


VECTOR_SHAPES = [(2, 1), (2, 5), (7, 3), (64, 16), *_random_shapes(1, 4, 2)]
SEQUENCE_SHAPES = [(1, 3, 4), (5, 2, 7)]
IMAGE_SHAPES = [(1, 3, 4, 5), (1, 1, 2, 1), (2, 6, 1, 1), (8, 4, 6, 6), *_random_shapes(2, 4, 4)]


def _pair(ours_cls, theirs_cls, channels, **kwargs):
    """Our layer and torch's with the same random gamma/beta, both float64."""
    ours = ours_cls(channels, dtype=F64, **kwargs)
    theirs = theirs_cls(channels, dtype=F64, **kwargs)
    with torch.no_grad():
        if theirs.weight is not None:
            theirs.weight.uniform_(0.5, 1.5)
        if theirs.bias is not None:
            theirs.bias.uniform_(-1, 1)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _input(shape, channels_last=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=F64, generator=gen) * 2.5 + 0.7
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _check_step(ours, theirs, x, seed=1):
    """One forward/backward through both layers: outputs, all gradients and buffers agree."""
    xa = x.detach().clone().requires_grad_()
    xb = x.detach().clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    torch.testing.assert_close(ya, yb, **TOL)
    assert ya.dtype == yb.dtype and ya.shape == yb.shape
    grad = torch.randn(yb.shape, dtype=F64, generator=torch.Generator().manual_seed(seed))
    ya.backward(grad)
    yb.backward(grad)
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    for name in ("weight", "bias"):
        pa, pb = getattr(ours, name), getattr(theirs, name)
        assert (pa is None) == (pb is None)
        if pa is not None:
            torch.testing.assert_close(pa.grad, pb.grad, **TOL)
            pa.grad = pb.grad = None
    _assert_buffers_equal(ours, theirs)
    return ya


def _assert_buffers_equal(ours, theirs):
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        ba, bb = getattr(ours, name), getattr(theirs, name)
        assert (ba is None) == (bb is None), name
        if ba is not None:
            assert ba.dtype == bb.dtype, name
            torch.testing.assert_close(ba, bb, **TOL)


CASES = (
    [(BatchNorm1d, nn.BatchNorm1d, s, False) for s in VECTOR_SHAPES + SEQUENCE_SHAPES]
    + [(BatchNorm2d, nn.BatchNorm2d, s, False) for s in IMAGE_SHAPES]
    + [(BatchNorm2d, nn.BatchNorm2d, s, True) for s in IMAGE_SHAPES]
)


@pytest.mark.parametrize(
    "ours_cls, theirs_cls, shape, channels_last",
    CASES,
    ids=[f"{c[0].__name__}-{'x'.join(map(str, c[2]))}{'-cl' if c[3] else ''}" for c in CASES],
)
def test_forward_and_gradients_match_torch_in_train_and_eval(ours_cls, theirs_cls, shape, channels_last):
    ours, theirs = _pair(ours_cls, theirs_cls, shape[1])
    y = _check_step(ours, theirs, _input(shape, channels_last, seed=0))
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    _check_step(ours, theirs, _input(shape, channels_last, seed=1))  # running stats now non-trivial
    ours.eval()
    theirs.eval()
    _check_step(ours, theirs, _input(shape, channels_last, seed=2))
    _check_step(ours, theirs, _input((1, *shape[1:]), channels_last, seed=3))  # N=1 is fine in eval


@pytest.mark.parametrize("denominator", ["sqrt_var", "std_plus_eps"])
@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (6, 3)), (BatchNorm1d, (3, 2, 4)), (BatchNorm2d, (3, 2, 3, 4))])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(cls, shape, training, denominator):
    layer = cls(shape[1], dtype=F64, denominator=denominator)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-1, 1)
        layer.running_mean.uniform_(-1, 1)
        layer.running_var.uniform_(0.5, 2)
    layer.train(training)
    x = _input(shape).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: _with_params(layer, x, w, b), (x, layer.weight, layer.bias))
    assert torch.autograd.gradgradcheck(lambda x, w, b: _with_params(layer, x, w, b), (x, layer.weight, layer.bias))


def _with_params(layer, x, w, b):
    return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))


@pytest.mark.parametrize("momentum", [0.1, None, 1.0])
@pytest.mark.parametrize("ours_cls, theirs_cls, shapes", [
    (BatchNorm1d, nn.BatchNorm1d, [(8, 5), (3, 5), (17, 5), (2, 5), (8, 5)]),
    (BatchNorm2d, nn.BatchNorm2d, [(4, 3, 5, 5), (1, 3, 2, 7), (6, 3, 3, 3), (2, 3, 4, 4)]),
])
def test_running_statistics_after_k_steps(ours_cls, theirs_cls, shapes, momentum):
    ours, theirs = _pair(ours_cls, theirs_cls, shapes[0][1], momentum=momentum)
    for step, shape in enumerate(shapes):
        x = _input(shape, seed=step) * (step + 1)
        ours(x)
        theirs(x)
        _assert_buffers_equal(ours, theirs)
    assert int(ours.num_batches_tracked) == len(shapes)
    assert not ours.running_mean.requires_grad and ours.running_mean.grad_fn is None
    ours.eval()
    theirs.eval()
    x = _input(shapes[0], seed=99)
    torch.testing.assert_close(ours(x), theirs(x), **TOL)
    _assert_buffers_equal(ours, theirs)  # eval leaves the buffers alone
    assert int(ours.num_batches_tracked) == len(shapes)


@pytest.mark.parametrize("ours_cls, theirs_cls, shape", [
    (BatchNorm1d, nn.BatchNorm1d, (10, 4)),
    (BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 5)),
])
@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
@pytest.mark.parametrize("kwargs", [{}, {"affine": False}, {"track_running_stats": False}, {"bias": False}])
def test_state_dict_moves_both_ways(ours_cls, theirs_cls, shape, direction, kwargs):
    ours, theirs = ours_cls(shape[1], **kwargs), theirs_cls(shape[1], **kwargs)
    source, target = (ours, theirs) if direction == "ours_to_torch" else (theirs, ours)
    with torch.no_grad():  # give the source non-default state, trained and perturbed
        for step in range(3):
            source(torch.randn(shape) * 2 + step)
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    sa, sb = source.state_dict(), target.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].shape == sb[key].shape and sa[key].dtype == sb[key].dtype, key
    target.load_state_dict(sa, strict=True)
    for key, value in target.state_dict().items():
        assert torch.equal(value, sa[key]), key
    source.eval()
    target.eval()
    x = torch.randn(shape)
    torch.testing.assert_close(target(x), source(x), rtol=1e-6, atol=1e-6)


def test_state_dict_inside_a_model_round_trips():
    def model(bn1, bn2):
        return nn.Sequential(nn.Conv2d(1, 4, 3), bn2(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), bn1(8))

    torch.manual_seed(0)
    theirs = model(nn.BatchNorm1d, nn.BatchNorm2d).double()
    ours = model(BatchNorm1d, BatchNorm2d).double()
    theirs(torch.randn(5, 1, 8, 8, dtype=F64))  # trains the running stats
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(3, 1, 8, 8, dtype=F64)
    torch.testing.assert_close(ours(x), theirs(x), **TOL)


def test_legacy_state_dict_without_num_batches_tracked_loads():
    ours = BatchNorm1d(3)
    state = nn.BatchNorm1d(3).state_dict()
    del state["num_batches_tracked"]
    state._metadata[""]["version"] = 1
    ours.load_state_dict(state)
    assert int(ours.num_batches_tracked) == 0


@pytest.mark.parametrize("ours_cls, theirs_cls, shape", [
    (BatchNorm1d, nn.BatchNorm1d, (1, 4)),
    (BatchNorm1d, nn.BatchNorm1d, (1, 4, 1)),
    (BatchNorm2d, nn.BatchNorm2d, (1, 4, 1, 1)),
])
@pytest.mark.parametrize("kwargs", [{}, {"track_running_stats": False}])
def test_single_value_per_channel_in_training_raises_like_torch(ours_cls, theirs_cls, shape, kwargs):
    x = torch.randn(shape)
    with pytest.raises(Exception) as theirs_error:
        theirs_cls(4, **kwargs)(x)
    with pytest.raises(Exception) as ours_error:
        ours_cls(4, **kwargs)(x)
    assert type(ours_error.value) is type(theirs_error.value) is ValueError
    assert str(ours_error.value) == str(theirs_error.value)
    assert "Expected more than 1 value per channel when training, got input size" in str(ours_error.value)


@pytest.mark.parametrize("ours_cls, theirs_cls, shape", [
    (BatchNorm1d, nn.BatchNorm1d, (4,)),
    (BatchNorm1d, nn.BatchNorm1d, (2, 4, 3, 3)),
    (BatchNorm2d, nn.BatchNorm2d, (2, 4)),
    (BatchNorm2d, nn.BatchNorm2d, (2, 4, 3)),
    (BatchNorm2d, nn.BatchNorm2d, (2, 4, 3, 3, 3)),
])
def test_wrong_rank_raises_like_torch(ours_cls, theirs_cls, shape):
    x = torch.randn(shape)
    with pytest.raises(ValueError) as theirs_error:
        theirs_cls(4)(x)
    with pytest.raises(ValueError) as ours_error:
        ours_cls(4)(x)
    assert str(ours_error.value) == str(theirs_error.value)


def test_wrong_channel_count_raises():
    with pytest.raises(RuntimeError, match="3 channels"):
        BatchNorm2d(4)(torch.randn(2, 3, 4, 4))


def test_bad_denominator_is_rejected():
    with pytest.raises(ValueError, match="denominator"):
        BatchNorm1d(3, denominator="std")


def _course_formula(x, mean, var, gamma, beta, eps):
    """(x - mu) / (sigma + eps) * gamma + beta, written out in float64."""
    dims = [0, *range(2, x.dim())]
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    if mean is None:
        mean = x.mean(dim=dims)
        var = ((x - mean.reshape(shape)) ** 2).mean(dim=dims)
    sigma = var.sqrt()
    return (x - mean.reshape(shape)) / (sigma.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (9, 4)), (BatchNorm2d, (3, 4, 5, 2))])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_std_plus_eps_is_the_course_formula_and_differs_from_default(cls, shape, eps):
    course = cls(shape[1], eps=eps, dtype=F64, denominator="std_plus_eps")
    default = cls(shape[1], eps=eps, dtype=F64)
    with torch.no_grad():
        course.weight.uniform_(0.5, 1.5)
        course.bias.uniform_(-1, 1)
    default.load_state_dict(course.state_dict())
    x = _input(shape) * 0.01  # small variance: the two denominators visibly disagree
    expected = _course_formula(x, None, None, course.weight.detach(), course.bias.detach(), eps)
    y = course(x)
    torch.testing.assert_close(y, expected, **TOL)
    assert not torch.allclose(y, default(x), rtol=1e-6, atol=1e-6)
    _assert_buffers_equal(course, default)  # the denominator does not change the bookkeeping
    course.eval()
    expected = _course_formula(x, course.running_mean, course.running_var, course.weight.detach(), course.bias.detach(), eps)
    torch.testing.assert_close(course(x), expected, **TOL)


def test_std_plus_eps_constant_channel_has_finite_gradients():
    layer = BatchNorm2d(2, dtype=F64, denominator="std_plus_eps")
    x = torch.ones(3, 2, 4, 4, dtype=F64, requires_grad=True)
    layer(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("ours_cls, theirs_cls, shape", [
    (BatchNorm1d, nn.BatchNorm1d, (6, 5)),
    (BatchNorm1d, nn.BatchNorm1d, (4, 5, 3)),
    (BatchNorm2d, nn.BatchNorm2d, (3, 5, 4, 4)),
])
@pytest.mark.parametrize("kwargs", [
    {"affine": False},
    {"track_running_stats": False},
    {"affine": False, "track_running_stats": False},
    {"bias": False},
    {"eps": 0.5, "momentum": 0.7},
])
def test_options_behave_as_torch(ours_cls, theirs_cls, shape, kwargs):
    ours, theirs = _pair(ours_cls, theirs_cls, shape[1], **kwargs)
    assert repr(ours) == repr(theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    for seed in range(2):
        _check_step(ours, theirs, _input(shape, seed=seed))
    ours.eval()
    theirs.eval()
    _check_step(ours, theirs, _input(shape, seed=5))


def test_reset_methods_and_dtypes_match_torch():
    ours, theirs = _pair(BatchNorm2d, nn.BatchNorm2d, 3)
    for layer in (ours, theirs):
        layer(_input((4, 3, 2, 2)))
    assert ours.num_batches_tracked.dtype == torch.long
    ours.reset_running_stats()
    theirs.reset_running_stats()
    _assert_buffers_equal(ours, theirs)
    ours.reset_parameters()
    assert torch.equal(ours.weight, torch.ones(3, dtype=F64)) and torch.equal(ours.bias, torch.zeros(3, dtype=F64))


def test_never_calls_torch_batch_norm(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch's batch norm was called")

    monkeypatch.setattr(torch, "batch_norm", forbidden)
    monkeypatch.setattr(F, "batch_norm", forbidden)
    layer = BatchNorm2d(3)
    layer(torch.randn(2, 3, 4, 4)).sum().backward()
    layer.eval()
    layer(torch.randn(2, 3, 4, 4))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_returns_its_dtype_with_float32_statistics(dtype):
    ours, theirs = BatchNorm2d(4), nn.BatchNorm2d(4)
    x = (torch.randn(8, 4, 6, 6) * 0.5 + 30).to(dtype)  # large mean: a low-precision mean would be off
    y = ours(x)
    assert y.dtype == dtype
    reference = theirs(x.float())
    torch.testing.assert_close(y.float(), reference, rtol=0, atol=0.02)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=1e-6, atol=1e-6)
    assert ours.running_mean.dtype == torch.float32


def test_bf16_autocast():
    ours, theirs = BatchNorm1d(6), nn.BatchNorm1d(6)
    linear = nn.Linear(5, 6)
    x = torch.randn(16, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = linear(x)
        assert h.dtype == torch.bfloat16
        y = ours(h)
        y_ref = theirs(h)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=0.02, atol=0.02)
    y.float().sum().backward()
    assert ours.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("momentum", [0.1, None])
def test_torch_compile_fullgraph_matches_eager(momentum):
    torch._dynamo.reset()
    eager = BatchNorm2d(3, momentum=momentum)
    compiled_layer = BatchNorm2d(3, momentum=momentum)
    compiled = torch.compile(compiled_layer, fullgraph=True, backend="aot_eager")
    for step in range(3):
        x = torch.randn(4, 3, 5, 5) * (step + 1)
        torch.testing.assert_close(compiled(x), eager(x))
    _assert_buffers_equal(compiled_layer, eager)
    compiled_layer.eval()
    eager.eval()
    torch.testing.assert_close(compiled(x), eager(x))


def test_norm_layers_switch():
    bn1, bn2 = norm_layers("scratch")
    assert (bn1, bn2) == (BatchNorm1d, BatchNorm2d)
    assert isinstance(bn1(120), BatchNorm1d) and isinstance(bn2(6), BatchNorm2d)
    assert bn2(6).weight.shape == (6,)
    assert norm_layers("torch") == (nn.BatchNorm1d, nn.BatchNorm2d)
    with pytest.raises(CnnzooError):
        norm_layers("group")
