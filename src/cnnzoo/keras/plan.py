"""The Keras layers that compute what a zoo model computes, read off the model's own graph.

``plan(model, input_shape)`` traces the PyTorch model with torch.fx and maps every operation to one Keras
layer, a :class:`Step`; :mod:`cnnzoo.keras.twins` turns the plan (PyTorch facts and names only) into Keras
layers. Where the frameworks disagree, ``_Builder``'s method for the case says how (padding, pool,
ceil_max_pool, activation, concat, flatten).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from cnnzoo.errors import CnnzooError
from cnnzoo.nn import BatchNorm1d as ScratchBatchNorm1d
from cnnzoo.nn import BatchNorm2d as ScratchBatchNorm2d
from cnnzoo.nn.same_padding import SamePadding2d

_ACTIVATIONS = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
_NON_NEGATIVE = {"relu", "sigmoid"}  # outputs >= 0, so zero padding equals -inf padding for a max pool
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, ScratchBatchNorm1d, ScratchBatchNorm2d)
_LEAVES = (SamePadding2d, ScratchBatchNorm1d, ScratchBatchNorm2d)
# Layer-name prefixes, as Keras course code names its layers (conv1, pool1, dense1, ...).
_PREFIX = {"conv": "conv", "dense": "dense", "bn": "bn", "maxpool": "pool", "avgpool": "pool", "gap": "gap",
           "pad": "pad", "flatten": "flatten", "dropout": "dropout", "add": "add", "concat": "concat"}


@dataclass
class Step:
    """One Keras layer: its ``kind``, its options, the steps it reads and the torch module it mirrors."""

    kind: str  # conv dense bn activation maxpool avgpool gap pad flatten dropout add concat
    options: dict
    inputs: tuple[str, ...]
    module: str | None = None  # path of the torch module whose weights the layer holds
    flatten_from: tuple[int, int, int] | None = None  # dense after a flatten of this (C, H, W) map
    name: str = ""


@dataclass
class Plan:
    """The steps in forward order, their names unique; ``output`` is the last step's name."""

    input_shape: tuple[int, int, int]
    steps: list[Step] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.steps[-1].name

    @property
    def is_chain(self) -> bool:
        """Each step reads only the one before it: a Keras ``Sequential``."""
        previous = "input"
        for step in self.steps:
            if step.inputs != (previous,):
                return False
            previous = step.name
        return True

    def weighted(self) -> list[Step]:
        return [step for step in self.steps if step.module is not None]


@dataclass
class _Value:
    """What the plan knows of one traced tensor: the step that makes it and its (C, H, W) facts."""

    step: Step | None  # None: the model's input
    shape: tuple[int, ...]  # without the batch axis, PyTorch's order
    non_negative: bool = False
    flatten_from: tuple[int, int, int] | None = None  # set between a flatten and the next dense layer
    same_padding: SamePadding2d | None = None  # a pending TF 'same' pad for the next conv or pool


class _Tracer(fx.Tracer):
    # Hand-written layers are translated whole; tracing into them would show their arithmetic.
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, _LEAVES) or super().is_leaf_module(module, qualified_name)


def plan(model: nn.Module, input_shape: tuple[int, int, int]) -> Plan:
    """The Keras steps of ``model`` for inputs of ``input_shape`` (C, H, W).

    Read off a torch.fx trace, so the order and the skips are the forward pass's own, not a second
    hand-written description of each architecture."""
    name = type(model).__name__
    try:
        graph = fx.GraphModule(model, _Tracer().trace(model))
    except Exception as error:  # torch.fx's TraceError and whatever a forward with Python control flow raises
        raise CnnzooError(f"cnnzoo.keras cannot trace {name} ({type(error).__name__}: {error}); only models whose "
                          "forward is a fixed graph of layers, as the zoo's are, have Keras twins.") from None
    was_training = model.training
    model.eval()  # the shapes do not depend on the mode, and eval neither updates statistics nor needs N > 1
    try:
        with torch.no_grad():
            parameter = next(model.parameters(), None)
            x = torch.zeros((1, *input_shape), dtype=parameter.dtype if parameter is not None else torch.float32)
            try:
                model(x)  # first plainly: ShapeProp would print its own traceback before the error
            except RuntimeError as error:
                raise CnnzooError(f"{name} does not take inputs of shape {tuple(input_shape)} "
                                  f"({str(error).splitlines()[0]}); pass the (C, H, W) it was built for as "
                                  "input_shape.") from None
            ShapeProp(graph).propagate(x)
    finally:
        model.train(was_training)
    builder = _Builder(model, tuple(input_shape))
    for node in graph.graph.nodes:
        builder.visit(node)
    return builder.finish()


class _Builder:
    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int]):
        self.model, self.result = model, Plan(input_shape)
        self.values: dict[fx.Node, _Value] = {}
        self.model_name = type(model).__name__

    def fail(self, what: str) -> CnnzooError:
        return CnnzooError(f"cnnzoo.keras cannot write {what} of {self.model_name} as a Keras layer; "
                           "only the zoo's layer types and options have Keras twins.")

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.values[node] = _Value(None, self.result.input_shape)
        elif node.op == "output":
            self.finish_value(self.values[node.args[0]])
        elif node.op == "call_module":
            self.values[node] = self.module(node, self.model.get_submodule(node.target))
        elif (node.op == "call_function" and node.target in (operator.add, torch.add) and len(node.args) == 2
              and not node.kwargs and all(isinstance(a, fx.Node) for a in node.args)):  # a + b, not alpha=, not + 1
            left, right = (self.materialize(self.values[a]) for a in node.args)
            step = self.add("add", {}, (left, right))
            self.values[node] = _Value(step, _shape(node), left.non_negative and right.non_negative)
        elif node.op == "call_function" and node.target is torch.cat:
            self.values[node] = self.concat(node)
        elif node.op == "call_function" and node.target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self.values[node] = self.flatten(self.values[node.args[0]], start, end, node)
        else:
            raise self.fail(f"the operation {node.op} {getattr(node.target, '__name__', node.target)}")

    def add(self, kind: str, options: dict, inputs: tuple[_Value, ...], module: str | None = None,
            flatten_from=None) -> Step:
        names = tuple(value.step.name if value.step is not None else "input" for value in inputs)
        step = Step(kind, options, names, module, flatten_from)
        step.name = f"#{len(self.result.steps)}"  # provisional; finish() gives the readable names
        self.result.steps.append(step)
        return step

    def materialize(self, value: _Value) -> _Value:
        """A value with no pending 'same' pad: one that no conv or pool absorbed becomes ZeroPadding2D."""
        pad = value.same_padding
        if pad is None:
            return value
        if pad.value != 0.0:
            raise self.fail("a non-zero 'same' padding that no pooling layer absorbs")
        (top, bottom), (left, right) = (pad._amounts(size) for size in value.shape[1:])
        step = self.add("pad", {"padding": ((top, bottom), (left, right))}, (value,))
        return _Value(step, (value.shape[0], value.shape[1] + top + bottom, value.shape[2] + left + right),
                      value.non_negative)

    def module(self, node: fx.Node, module: nn.Module) -> _Value:
        (source,) = (self.values[a] for a in node.args)
        if isinstance(module, SamePadding2d):
            # cnnzoo's TF padding: held pending, to fold into the next conv's or pool's padding='same'.
            if source.same_padding is not None:
                source = self.materialize(source)
            return _Value(source.step, source.shape, source.non_negative, source.flatten_from, module)
        if isinstance(module, nn.Conv2d):
            return self.conv(node, module, source)
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            return self.pool(node, module, source)
        source = self.materialize(source)
        if isinstance(module, nn.Linear):
            if len(source.shape) != 1:
                raise self.fail(f"the dense layer {node.target} on a {len(source.shape) + 1}-d input")
            step = self.add("dense", {"units": module.out_features, "use_bias": module.bias is not None,
                                      "activation": None}, (source,), node.target, source.flatten_from)
            return _Value(step, _shape(node))
        if type(module) in _ACTIVATIONS:
            return self.activation(node, _ACTIVATIONS[type(module)], source)
        if isinstance(module, _BATCH_NORMS):
            return self.batch_norm(node, module, source)
        if isinstance(module, nn.Dropout):
            step = self.add("dropout", {"rate": module.p}, (source,))
            return _Value(step, source.shape, source.non_negative, source.flatten_from)
        if isinstance(module, nn.Flatten):
            return self.flatten(source, module.start_dim, module.end_dim, node)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return self.adaptive_pool(node, source)
        if isinstance(module, nn.Identity):
            return source
        raise self.fail(f"the module {node.target} ({type(module).__name__})")

    def conv(self, node: fx.Node, conv: nn.Conv2d, source: _Value) -> _Value:
        """A padded conv is 'same' only where TF's 'same' equals PyTorch's padding (see :meth:`padding`);
        any other becomes ``ZeroPadding2D`` + a 'valid' conv, as keras.applications writes ResNet's stem."""
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise self.fail(f"the grouped, dilated or non-zero-padded conv {node.target}")
        padding = self.padding(node, conv.kernel_size, conv.stride, conv.padding, source, fill=0.0)
        if padding != "same":
            source = self.materialize(source)
        if isinstance(padding, tuple):
            source = self.pad(source, padding)
            padding = "valid"
        step = self.add("conv", {"filters": conv.out_channels, "kernel_size": conv.kernel_size,
                                 "strides": conv.stride, "padding": padding, "use_bias": conv.bias is not None,
                                 "activation": None}, (source,), node.target)
        return _Value(step, _shape(node))

    def pool(self, node: fx.Node, pool: nn.Module, source: _Value) -> _Value:
        """A padded max pool pads with -inf in PyTorch; the ZeroPadding2D it becomes gives the same maxima
        only on a non-negative input (after a ReLU or a sigmoid), which is checked here instead of assumed."""
        kernel, stride = _pair(pool.kernel_size), _pair(pool.stride)
        if isinstance(pool, nn.MaxPool2d) and (pool.dilation not in (1, (1, 1)) or pool.return_indices):
            raise self.fail(f"the dilated or index-returning pool {node.target}")
        if pool.ceil_mode:  # the overhang is measured on the input as it reaches the pool, any pending pad applied
            source = self.materialize(source)
        overhang = self.ceil_overhang(node, kernel, stride, _pair(pool.padding), source) if pool.ceil_mode else (0, 0)
        if any(overhang):
            if isinstance(pool, nn.AvgPool2d):
                raise self.fail(f"the ceil-mode average pool {node.target} whose last window is partial")
            return self.ceil_max_pool(node, kernel, stride, _pair(pool.padding), overhang, source)
        if isinstance(pool, nn.AvgPool2d) and (_pair(pool.padding) != (0, 0) or pool.divisor_override):
            raise self.fail(f"the padded average pool {node.target}")
        if isinstance(pool, nn.AvgPool2d):
            # TF's 'same' average leaves the padded pixels out of the mean, PyTorch's pad-then-pool counts
            # them: an explicit ZeroPadding2D keeps PyTorch's arithmetic.
            source = self.materialize(source)
        padding = self.padding(node, kernel, stride, _pair(pool.padding), source, fill=float("-inf"))
        if padding != "same":
            source = self.materialize(source)
        if isinstance(padding, tuple):
            if not source.non_negative:
                raise self.fail(f"the padded max pool {node.target} on an input that may be negative")
            source = self.pad(source, padding)
            padding = "valid"
        kind = "maxpool" if isinstance(pool, nn.MaxPool2d) else "avgpool"
        step = self.add(kind, {"pool_size": kernel, "strides": stride, "padding": padding}, (source,))
        return _Value(step, _shape(node), source.non_negative)

    def ceil_overhang(self, node: fx.Node, kernel, stride, padding, source: _Value) -> tuple[int, int]:
        """The rows and columns a ceil-mode pool's last window reaches past the (padded) input: 0 where the
        output is the floor-mode size, as for Inception's 3x3/1 pools."""
        overhang = []
        for size, out, k, s, p in zip(source.shape[1:], _shape(node)[1:], kernel, stride, padding):
            floor_out = (size + 2 * p - k) // s + 1
            overhang.append(0 if out == floor_out else (out - 1) * s + k - (size + 2 * p))
        return tuple(overhang)

    def ceil_max_pool(self, node: fx.Node, kernel, stride, padding, overhang, source: _Value) -> _Value:
        """A ceil-mode max pool (torchvision's GoogLeNet) keeps a last, partial window that Keras has no option
        for: where it adds an output row or column, zeros padded at the bottom/right make that window whole."""
        # PyTorch clips the last window to the input, which for a max is padding with -inf; zeros give the
        # same maximum when no value is negative and every window holds at least one input pixel (PyTorch's rule).
        source = self.materialize(source)
        if not source.non_negative:
            raise self.fail(f"the ceil-mode max pool {node.target} on an input that may be negative")
        (rows, columns), (extra_rows, extra_columns) = padding, overhang
        step = self.add("pad", {"padding": ((rows, rows + extra_rows), (columns, columns + extra_columns))}, (source,))
        channels, height, width = source.shape
        padded = _Value(step, (channels, height + 2 * rows + extra_rows, width + 2 * columns + extra_columns), True)
        step = self.add("maxpool", {"pool_size": kernel, "strides": stride, "padding": "valid"}, (padded,))
        return _Value(step, _shape(node), True)

    def padding(self, node: fx.Node, kernel, stride, padding, source: _Value, fill: float):
        """'same', 'valid', or the symmetric (rows, columns) amounts a ZeroPadding2D must add.

        Keras has only 'valid' and 'same', and TF's 'same' pads the odd pixel at the bottom/right, so it
        equals PyTorch's symmetric ``padding=(k-1)/2`` only at stride 1 (and an odd kernel). A pending
        ``SamePadding2d`` becomes the layer's own 'same' when it was made for this kernel and stride and
        fills the border as Keras does for this layer (zeros for a conv, -inf for a max pool)."""
        pending = source.same_padding
        if pending is not None:
            matches = (_pair(pending.kernel) == tuple(kernel) and _pair(pending.stride) == tuple(stride)
                       and pending.value == fill)
            if tuple(padding) == (0, 0) and matches:
                return "same"
            return "valid" if padding == (0, 0) else tuple(padding)
        if isinstance(padding, str):
            if padding == "same" and tuple(stride) != (1, 1):
                raise self.fail(f"'same' padding at stride {stride} in {node.target}")
            return padding
        if tuple(padding) == (0, 0):
            return "valid"
        if tuple(stride) == (1, 1) and all(k % 2 == 1 and p == (k - 1) // 2 for k, p in zip(kernel, padding)):
            return "same"
        return tuple(padding)

    def pad(self, source: _Value, padding: tuple[int, int]) -> _Value:
        rows, columns = padding
        step = self.add("pad", {"padding": ((rows, rows), (columns, columns))}, (source,))
        channels, height, width = source.shape
        return _Value(step, (channels, height + 2 * rows, width + 2 * columns), source.non_negative)

    def activation(self, node: fx.Node, function: str, source: _Value) -> _Value:
        """An activation that directly follows a conv or dense layer folds into its ``activation=``, as the
        material writes ``Conv2D(6, 5, activation='sigmoid')``; after batch norm it stays a layer."""
        producer = source.step
        folds = (producer is not None and producer.kind in ("conv", "dense") and producer.options["activation"] is None
                 and len(node.args[0].users) == 1)
        if folds:
            producer.options["activation"] = function
            return _Value(producer, source.shape, function in _NON_NEGATIVE)
        step = self.add("activation", {"activation": function}, (source,))
        return _Value(step, source.shape, function in _NON_NEGATIVE, source.flatten_from)

    def batch_norm(self, node: fx.Node, norm: nn.Module, source: _Value) -> _Value:
        if not norm.track_running_stats or norm.momentum is None:
            raise self.fail(f"the batch norm {node.target} without running statistics or with a cumulative average")
        if norm.affine and norm.bias is None:
            raise self.fail(f"the batch norm {node.target} with a scale but no shift (Keras's has both or neither)")
        if getattr(norm, "denominator", "sqrt_var") != "sqrt_var":
            raise self.fail(f"the batch norm {node.target} dividing by std + eps (Keras divides by sqrt(var + eps))")
        if source.flatten_from is not None:
            raise self.fail(f"the batch norm {node.target} between a flatten and a dense layer")
        step = self.add("bn", {"momentum": norm.momentum, "epsilon": norm.eps, "affine": norm.affine,
                               "spatial": len(source.shape) == 3}, (source,), node.target)
        return _Value(step, source.shape)

    def concat(self, node: fx.Node) -> _Value:
        """``torch.cat`` along the channels (Inception's paths, DenseNet's layers): a ``Concatenate`` that the
        twin puts on the channel axis of its data format."""
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        rank = len(_shape(node)) + 1
        if (not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors)
                or not isinstance(dim, int) or dim % rank != 1):
            raise self.fail(f"a concatenation along axis {dim}")
        sources = tuple(self.materialize(self.values[t]) for t in tensors)
        if any(source.flatten_from is not None for source in sources):
            raise self.fail("a concatenation between a flatten and a dense layer")
        step = self.add("concat", {"spatial": rank == 4}, sources)
        return _Value(step, _shape(node), all(source.non_negative for source in sources))

    def flatten(self, source: _Value, start: int, end: int, node: fx.Node) -> _Value:
        """Keras flattens in (H, W, C) order whatever the data format, PyTorch in (C, H, W): a flatten of a
        spatial map records its shape as ``flatten_from``, which the next dense step keeps so the weight
        conversion can reorder that layer's rows."""
        source = self.materialize(source)
        if start != 1 or end != -1:
            raise self.fail(f"a flatten from axis {start} to {end}")
        if len(source.shape) == 1:
            return source
        if source.step is not None and source.step.kind == "gap" and not source.step.options["keepdims"]:
            return source
        step = self.add("flatten", {}, (source,))
        spatial = len(source.shape) == 3 and source.shape[1] * source.shape[2] > 1
        return _Value(step, _shape(node), source.non_negative, tuple(source.shape) if spatial else None)

    def adaptive_pool(self, node: fx.Node, source: _Value) -> _Value:
        (channels, height, width), (_, out_h, out_w) = source.shape, _shape(node)
        if (out_h, out_w) == (height, width):
            return source  # PyTorch's torchvision twins pool 6x6 (7x7) maps to 6x6 (7x7) at 224 px: a no-op
        if (out_h, out_w) == (1, 1):
            flattened_next = all(user.target is torch.flatten or isinstance(self._submodule(user), nn.Flatten)
                                 for user in node.users)
            step = self.add("gap", {"keepdims": not flattened_next}, (source,))
            return _Value(step, (channels,) if flattened_next else (channels, 1, 1), source.non_negative)
        if height % out_h or width % out_w:
            raise self.fail(f"the adaptive pool {node.target} from {height}x{width} to {out_h}x{out_w} "
                            "(not a whole number of pixels per cell; use the model's default input size)")
        window = (height // out_h, width // out_w)
        step = self.add("avgpool", {"pool_size": window, "strides": window, "padding": "valid"}, (source,))
        return _Value(step, _shape(node), source.non_negative)

    def _submodule(self, node: fx.Node):
        return self.model.get_submodule(node.target) if node.op == "call_module" else None

    def finish_value(self, value: _Value) -> None:
        value = self.materialize(value)
        if value.step is None or value.step is not self.result.steps[-1]:
            raise self.fail("an output that is not the last layer")

    def finish(self) -> Plan:
        """Give every step its readable name: the kind's prefix and its count (conv1, conv2, ...),
        without a number for a kind that occurs once (flatten), and rewrite the inputs to match."""
        counts: dict[str, int] = {}
        for step in self.result.steps:
            prefix = self.prefix(step)
            counts[prefix] = counts.get(prefix, 0) + 1
        seen: dict[str, int] = {}
        renamed = {"input": "input"}
        for step in self.result.steps:
            prefix = self.prefix(step)
            seen[prefix] = seen.get(prefix, 0) + 1
            renamed[step.name] = prefix if counts[prefix] == 1 else f"{prefix}{seen[prefix]}"
            step.name = renamed[step.name]
            step.inputs = tuple(renamed[name] for name in step.inputs)
        return self.result

    @staticmethod
    def prefix(step: Step) -> str:
        return step.options["activation"] if step.kind == "activation" else _PREFIX[step.kind]


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape[1:])


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
