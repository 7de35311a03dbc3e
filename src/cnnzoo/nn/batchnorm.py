"""Batch normalization written with plain tensor ops, a drop-in for ``torch.nn.BatchNorm1d`` /
``BatchNorm2d``: same constructor, parameters and buffers, so a ``state_dict`` moves between the two
either way and gives the same outputs. It never calls torch's ``batch_norm``: the point is to show
(and test) what it computes, written out above `_BatchNorm.forward`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DENOMINATORS", "BatchNorm1d", "BatchNorm2d"]

# d(var), the denominator of the output (see forward): "sqrt_var" (default) is sqrt(var + eps),
# PyTorch's and the original paper's form; "std_plus_eps" is sqrt(var) + eps, the course notes'
# (sigma_B + eps). They agree when var >> eps and differ for nearly constant channels: with var = 0
# the default divides by sqrt(eps) (~3.2e-3), the course form by eps (1e-5), amplifying tiny
# deviations about 300x more. The course form is never bit-identical to torch's layer, hence not
# the default.
DENOMINATORS = ("sqrt_var", "std_plus_eps")

# Statistics of half-precision activations are accumulated in float32: a bf16 mean keeps
# only ~3 significant digits, and the shift (beta - mean * scale) inherits that error.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _safe_sqrt(var: Tensor) -> Tensor:
    # d sqrt(v)/dv is infinite at v = 0 (a constant channel), which would turn the whole
    # backward pass into NaN; the double `where` gives that point a zero gradient instead,
    # without a data-dependent Python branch (torch.compile traces it as one graph).
    positive = var > 0
    return torch.where(positive, torch.where(positive, var, torch.ones_like(var)).sqrt(), 0.0)


class _BatchNorm(nn.Module):
    """Shared implementation; subclasses only say which input ranks they accept.

    Args:
        num_features: ``C``, the size of the channel axis (axis 1) of the input.
        eps: added to the variance (``"sqrt_var"``) or to the standard deviation
            (``"std_plus_eps"``) so the division is never by zero.
        momentum: weight of the new batch in the running estimates. ``None`` means a
            cumulative moving average: the factor is ``1 / num_batches_tracked``, so the
            running estimates are the plain mean of all batch estimates so far.
        affine: learn a per-channel scale ``weight`` (gamma, init 1) and shift ``bias``
            (beta, init 0).
        track_running_stats: keep ``running_mean``, ``running_var`` and
            ``num_batches_tracked`` buffers and use them in eval mode. When ``False``
            the buffers are ``None`` and batch statistics are used in both modes.
        device, dtype: where and in what type parameters and buffers are created
            (``num_batches_tracked`` is always int64, as in torch).
        bias: keyword-only, as in torch: with ``affine=True``, ``bias=False`` drops beta.
        denominator: ``"sqrt_var"`` (default, PyTorch's ``sqrt(var + eps)``) or
            ``"std_plus_eps"`` (the course notes' ``sqrt(var) + eps``); see
            ``DENOMINATORS`` for how they differ. Not stored in the ``state_dict``.

    Low-precision inputs (float16/bfloat16, e.g. under autocast) are normalized with float32
    statistics and arithmetic and returned in the input's dtype. The output keeps the input's
    memory format (channels_last in, channels_last out).
    """

    _version = 2  # the torch state_dict version that introduced num_batches_tracked
    _expected_dims: tuple[int, ...] = ()
    _dims_text = ""

    num_features: int
    eps: float
    momentum: float | None
    affine: bool
    track_running_stats: bool
    denominator: str

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
        denominator: str = "sqrt_var",
    ) -> None:
        if denominator not in DENOMINATORS:
            raise ValueError(
                f"denominator must be one of {', '.join(map(repr, DENOMINATORS))}, "
                f"got {denominator!r}"
            )
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.denominator = denominator
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(num_features, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        text = (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )
        # Only the non-default form is shown, so the default repr reads exactly as torch's.
        if self.denominator != "sqrt_var":
            text += f", denominator={self.denominator!r}"
        return text

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # State dicts saved before torch's version 2 have no num_batches_tracked; accept them
        # as torch does, counting from 0.
        version = local_metadata.get("version", None)
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats and key not in state_dict:
            state_dict[key] = (
                self.num_batches_tracked
                if self.num_batches_tracked is not None
                and self.num_batches_tracked.device != torch.device("meta")
                else torch.tensor(0, dtype=torch.long)
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in self._expected_dims:
            raise ValueError(f"expected {self._dims_text} input (got {input.dim()}D input)")

    def _inverse_denominator(self, var: Tensor) -> Tensor:
        if self.denominator == "sqrt_var":
            return torch.rsqrt(var + self.eps)
        return torch.reciprocal(_safe_sqrt(var) + self.eps)

    # Per channel c, with the statistics taken over every axis except the channel axis:
    #   training:  mean, var = batch mean and *biased* batch variance of x[:, c]
    #              running_mean <- (1 - m) * running_mean + m * mean
    #              running_var  <- (1 - m) * running_var  + m * var * n / (n - 1)   (unbiased)
    #   eval:      mean, var = running_mean, running_var
    #   output:    y = gamma * (x - mean) / d(var) + beta        (d: see DENOMINATORS)
    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        channels = input.shape[1]
        if (self.affine or self.running_mean is not None) and channels != self.num_features:
            # torch fails here too (RuntimeError from its kernel); say it in our own words.
            raise RuntimeError(
                f"{type(self).__name__}({self.num_features}) got input with {channels} "
                f"channels (input size {tuple(input.shape)})"
            )
        # Same decision as torch: batch statistics in training, and in eval mode too when
        # there are no running estimates; buffers change only in training when tracked.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        update_running = (
            self.training and self.track_running_stats and self.running_mean is not None
        )
        if use_batch_stats:
            per_channel = input.numel() // channels if channels else 0
            if per_channel == 1:
                raise ValueError(
                    "Expected more than 1 value per channel when training, "
                    f"got input size {input.size()}"
                )
            if self.eps <= 0.0:
                raise ValueError(f"batch_norm eps must be positive during training, but got {self.eps}")
        elif self.eps < 0.0:
            raise ValueError(f"batch_norm eps must be non-negative, but got {self.eps}")

        x = input.float() if input.dtype in _LOW_PRECISION else input
        reduce_dims = [0, *range(2, input.dim())]
        if use_batch_stats:
            # One pass over the data for both moments (Welford on CPU, one kernel on CUDA).
            var, mean = torch.var_mean(x, dim=reduce_dims, correction=0)
            if update_running:
                self.update_running_stats(mean, var, per_channel)
        else:
            mean, var = self.running_mean, self.running_var

        return self.normalize(x, mean, var).to(input.dtype)

    def normalize(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """gamma * (x - mean) / d(var) + beta with per-channel `mean` and `var` (also used by the
        data-parallel layer, which computes them over all processes)."""
        # Fold normalization and affine into one per-channel scale and shift, so the only
        # full-size work is a single fused multiply-add (addcmul) over the input.
        scale = self._inverse_denominator(var)
        if self.weight is not None:
            scale = self.weight * scale
        shift = -mean * scale if self.bias is None else self.bias - mean * scale
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        return torch.addcmul(shift.reshape(shape), x, scale.reshape(shape))

    def update_running_stats(self, mean: Tensor, var: Tensor, n: int | Tensor) -> None:
        """Fold one batch's `mean` and biased `var` over `n` values per channel into the running estimates."""
        # The running estimates are bookkeeping, not part of the model's function: no graph.
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                # A tensor factor, not float(num_batches_tracked): reading the count back to
                # Python would sync the GPU and break torch.compile's graph.
                factor = torch.reciprocal(
                    self.num_batches_tracked.to(
                        torch.promote_types(self.running_mean.dtype, torch.float32)
                    )
                )
            else:
                factor = self.momentum
            # torch normalizes with the biased variance but tracks the unbiased one.
            unbiased = var * (n / (n - 1))
            self.running_mean.mul_(1 - factor).add_(mean * factor)
            self.running_var.mul_(1 - factor).add_(unbiased * factor)


class BatchNorm1d(_BatchNorm):
    """Batch normalization of vectors ``(N, C)`` or sequences ``(N, C, L)``; see ``_BatchNorm``.

    Statistics are per feature ``C``, over the batch (and over ``L`` for 3-d input).
    """

    _expected_dims = (2, 3)
    _dims_text = "2D or 3D"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of images ``(N, C, H, W)``; see ``_BatchNorm``.

    Statistics are per channel, over batch, height and width. Works on contiguous and
    channels_last input and returns the same memory format it was given.
    """

    _expected_dims = (4,)
    _dims_text = "4D"
