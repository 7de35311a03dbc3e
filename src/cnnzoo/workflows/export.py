"""Export a trained model to ONNX or TorchScript, with its preprocessing inside the graph, or to Keras.

Entry: :func:`export_model`. An ONNX or TorchScript file takes uint8 images (N, 1, 28, 28) and returns logits
(:class:`Preprocessed`); a ``.keras`` file takes images already preprocessed (:func:`keras_input`). Every file is
checked against PyTorch on real test images before it replaces the target (``CHECK_TOLERANCE``).
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnzoo.atomic import atomic_target
from cnnzoo.data import InputSpec
from cnnzoo.errors import CnnzooError

FORMATS = ("onnx", "torchscript", "keras")
IMAGE_SHAPE = (1, 28, 28)
# The check: an exported file's logits on real test images, at batch sizes 1 and 7, may differ from
# PyTorch's by at most CHECK_TOLERANCE (the largest absolute difference); non-finite logits fail it.
CHECK_TOLERANCE = 1e-4
CHECK_BATCH_SIZES = (1, 7)


class Preprocessed(nn.Module):
    """uint8 (N, 1, 28, 28) -> logits: the run's input preprocessing followed by the model.

    It takes what the data sets hold: uint8 images, white on black, 0-255, any batch size N. It converts
    them to [0, 1], resizes them bilinearly to the model's input size and normalizes them exactly as
    training did (the run's :class:`cnnzoo.data.InputSpec`), then returns the logits (N, classes); a
    softmax gives probabilities. Why baked in: a consumer then needs no knowledge of the run's input size
    or normalization constants, which are the usual source of silent accuracy loss after export.
    """

    def __init__(self, model: nn.Module, input_spec: InputSpec):
        super().__init__()
        self.preprocess = input_spec.module(channels=IMAGE_SHAPE[0])
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(images))


@dataclass
class ExportResult:
    path: Path
    format: str
    classes: list[str]
    max_abs_diff: float | None  # None when the check was skipped
    input_spec: InputSpec  # what the model is fed (the Keras file takes images already preprocessed so)
    channels: int = 1  # the model's input channels (a Keras file takes them, gray copied, channels last)


def export_model(source: str | Path, output: str | Path, format: str = "onnx", check: bool = True,
                 data_dir: str | None = None) -> ExportResult:
    """Export the model of a run directory or checkpoint `source` to `output` as `format` (:data:`FORMATS`).

    ONNX and TorchScript hold :class:`Preprocessed` and the class names, as a JSON list; Keras is
    :func:`_export_keras`'s. The file is written to a temporary file beside `output`, checked against
    PyTorch on real test images (unless `check` is false; see CHECK_TOLERANCE) and only then renamed over
    `output`. A model with NaN or infinite weights is refused before anything is exported: its
    checkpoint does not load.
    """
    from cnnzoo.train.trained import load_trained

    if format not in FORMATS:
        raise CnnzooError(f"Unknown export format {format!r}; choose one of: {', '.join(FORMATS)}.")
    output = Path(output)
    if not output.parent.is_dir():
        raise CnnzooError(f"The folder {output.parent} does not exist; create it or choose another -o path.")
    if format == "keras" and output.suffix != ".keras":
        raise CnnzooError(f"A Keras model file must end in .keras (Keras refuses other names); got {output.name}.")
    trained = load_trained(source, device="cpu")
    images = _check_images(trained.config, data_dir) if check else None
    if format == "keras":
        return _export_keras(trained, output, images)
    wrapper = Preprocessed(trained.model, trained.input_spec).eval()
    with atomic_target(output) as tmp:
        example = torch.zeros((2, *IMAGE_SHAPE), dtype=torch.uint8)
        (_export_onnx if format == "onnx" else _export_torchscript)(wrapper, example, tmp, trained.classes)
        diff = _max_abs_diff(wrapper, tmp, format, images) if check else None
        _refuse_mismatch(format, diff)
    return ExportResult(path=output, format=format, classes=list(trained.classes), max_abs_diff=diff,
                        input_spec=trained.input_spec)


def _refuse_mismatch(format: str, diff: float | None) -> None:
    if diff is not None and math.isnan(diff):
        raise CnnzooError(f"The exported {format} model or PyTorch's gives non-finite logits (NaN or inf) on "
                          "real test images, so the export cannot be checked; nothing was written.")
    if diff is not None and not diff <= CHECK_TOLERANCE:
        raise CnnzooError(f"The exported {format} model's logits differ from PyTorch's by up to {diff:.2e} "
                          f"(more than {CHECK_TOLERANCE:g}); nothing was written.")


def keras_input(images_uint8: torch.Tensor, input_spec: InputSpec, channels: int):
    """uint8 (N, 1, H, W) images as a channels-last Keras twin takes them: preprocessed, gray copied to
    ``channels`` channels, (N, H, W, C) float32 numpy."""
    x = input_spec(images_uint8)
    if x.shape[1] != channels:
        x = x.expand(-1, channels, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def _export_keras(trained, output: Path, images: torch.Tensor | None) -> ExportResult:
    """A ``.keras`` file (needs ``cnnzoo[keras]``): the model's Keras twin (:mod:`cnnzoo.keras`) alone, fed as
    Keras code feeds a model: channels-last float images already preprocessed as the run's InputSpec says
    (:func:`keras_input` does it), logits out. The same temporary file and the same check as the others."""
    import cnnzoo.keras

    keras = cnnzoo.keras.import_keras()  # never a bare `import keras`: it would pick TensorFlow's backend

    model = trained.model.eval()
    with atomic_target(output, keep_suffix=True) as tmp:
        cnnzoo.keras.from_torch(model).save(tmp)
        diff = None
        if images is not None:
            # The file, not the twin in memory, is what a user will load: check what was written.
            written = keras.saving.load_model(tmp, compile=False)
            diff = _max_abs_diff_keras(model, written, trained.input_spec, images)
        _refuse_mismatch("keras", diff)
    return ExportResult(path=output, format="keras", classes=list(trained.classes), max_abs_diff=diff,
                        input_spec=trained.input_spec, channels=model.input_shape[0])


def _max_abs_diff_keras(model: nn.Module, twin, input_spec: InputSpec, images: torch.Tensor) -> float:
    from cnnzoo.keras import import_keras

    keras = import_keras()

    def pair(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = keras_input(batch, input_spec, model.input_shape[0])
        exported = torch.from_numpy(keras.ops.convert_to_numpy(twin(x, training=False)))
        return exported, model(torch.from_numpy(x).permute(0, 3, 1, 2))

    return _largest_difference(pair, images)


def _check_images(config, data_dir: str | None) -> torch.Tensor:
    from cnnzoo.data import load_split
    from cnnzoo.workflows.run import stored_data_dir

    try:
        split = load_split(config.dataset, "test", root=data_dir or stored_data_dir(config), download=False)
    except CnnzooError as error:
        raise CnnzooError(f"Cannot load test images to check the export ({error}); pass --data-dir or --no-check.") from None
    return split.images[: max(CHECK_BATCH_SIZES)]


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path, classes: list[str]) -> None:
    """torch.onnx.export (the dynamo exporter, opset 18) with a dynamic batch axis; the class names go in
    the metadata entry "classes"."""
    import onnx

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress chatter is not the user's concern
        program = torch.onnx.export(wrapper, (example,), input_names=["images"], output_names=["logits"],
                                    dynamic_shapes={"images": {0: batch}}, opset_version=18, dynamo=True,
                                    external_data=False, verbose=False)
    model = program.model_proto
    entry = model.metadata_props.add()
    entry.key, entry.value = "classes", json.dumps(classes)
    onnx.save_model(model, str(path))


def _export_torchscript(wrapper: nn.Module, example: torch.Tensor, path: Path, classes: list[str]) -> None:
    """torch.jit.trace, whose graph has no batch-size-dependent branches here; the class names go in the
    extra file "classes.json"."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        # The preprocessing compares the image size with the input size; images are always 28x28, so
        # the trace rightly records the answer as a constant.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, example)
        # Into memory first: torch.jit.save's C++ file writer aborts the whole process (exit 134) on a
        # full disk, where a Python write raises an OSError that atomic_target turns into DiskFull.
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"classes.json": json.dumps(classes)})
    path.write_bytes(buffer.getvalue())


@torch.no_grad()
def _max_abs_diff(wrapper: nn.Module, path: Path, format: str, images: torch.Tensor) -> float:
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            run = torch.jit.load(str(path), map_location="cpu")
    return _largest_difference(lambda x: (run(x).float(), wrapper(x)), images)


@torch.no_grad()
def _largest_difference(pair, images: torch.Tensor) -> float:
    """The largest |exported - PyTorch| logit over the check batches; ``pair(uint8 batch)`` gives both."""
    diffs = []
    for n in CHECK_BATCH_SIZES:
        exported, reference = pair(images[:n])
        if not (torch.isfinite(exported).all() and torch.isfinite(reference).all()):
            return math.nan  # NaN logits "agree" to nothing: max(0.0, nan) would read as a perfect match
        diffs.append((exported - reference).abs().max().item())
    return max(diffs)
