"""evaluate / predict: a model's accuracy and loss on a split, and its class probabilities for images;
eval mode and no autograd, so they cost no memory for gradients and change nothing they measure."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnzoo import display
from cnnzoo.data import BatchIterator, DataSplit, preprocess
from cnnzoo.train.runtime import Runtime


def per_class_accuracy(confusion) -> list[float]:
    """Each true class's fraction of correct predictions, from a confusion matrix (rows: true class;
    a tensor or nested lists). A class with no images gives 0.0, not NaN: the list stays fractions
    that evaluation.json and its schema hold, and the class's 0 / 0 images say why."""
    rows = confusion.tolist() if hasattr(confusion, "tolist") else confusion
    return [row[k] / sum(row) if sum(row) else 0.0 for k, row in enumerate(rows)]


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    predictions: torch.Tensor  # (N,) predicted class, on the CPU
    confidences: torch.Tensor  # (N,) probability of the predicted class
    labels: torch.Tensor
    classes: tuple[str, ...] = ()  # the split's class names, for display

    def confusion(self, num_classes: int | None = None) -> torch.Tensor:
        """Counts (rows: true class, columns: predicted); `num_classes` defaults to the split's."""
        num_classes = num_classes or len(self.classes) or int(max(self.labels.max(), self.predictions.max())) + 1
        index = self.labels * num_classes + self.predictions
        return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)

    def per_class_accuracy(self) -> list[float]:
        return per_class_accuracy(self.confusion())

    # In a notebook: accuracy, per-class accuracy and the confusion matrix; `print` gives them as text.
    def _repr_mimebundle_(self, include=None, exclude=None):
        return display.provider("evaluation_bundle")(self.accuracy, self.loss, self.confusion().tolist(), self.classes)

    def _repr_html_(self) -> str:
        return self._repr_mimebundle_()["text/html"]

    def __str__(self) -> str:
        return display.provider("evaluation_text")(self.accuracy, self.loss, self.confusion().tolist(), self.classes)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    split: DataSplit,
    *,
    input_size: tuple[int, int] | None = None,
    normalize: tuple[float, float] | None = None,
    batch_size: int = 1024,
    runtime: Runtime | None = None,
    tta: bool = False,
    resize_mode: str = "tensor",
) -> EvalResult:
    """Accuracy and loss in eval mode without autograd; `tta` averages with the mirrored image."""
    was_training = model.training
    model.eval()
    split = split.to(_device_of(model))
    autocast = runtime.autocast() if runtime else torch.autocast("cpu", enabled=False)
    memory_format = runtime.memory_format if runtime else torch.contiguous_format
    batches = BatchIterator(
        split, batch_size, shuffle=False, input_size=input_size, normalize=normalize,
        channels_last=memory_format == torch.channels_last, resize_mode=resize_mode,
    )
    total_loss = torch.zeros((), device=split.device)
    predictions, confidences = [], []
    with autocast:
        for x, y in batches:
            if tta:
                # One forward over image and mirror together: a second call of a CUDA-graphed model
                # would overwrite the first call's output before it is read.
                logits = model(torch.cat([x, torch.flip(x, dims=(3,))])).float().view(2, len(x), -1).mean(0)
            else:
                logits = model(x).float()
            total_loss += nn.functional.cross_entropy(logits, y, reduction="sum")
            confidence, predicted = logits.softmax(1).max(1)
            predictions.append(predicted)
            confidences.append(confidence)
    model.train(was_training)
    predictions_t = torch.cat(predictions).cpu()
    labels = split.labels.cpu()
    return EvalResult(
        loss=total_loss.item() / len(split),
        accuracy=(predictions_t == labels).double().mean().item(),
        predictions=predictions_t,
        confidences=torch.cat(confidences).cpu(),
        labels=labels,
        classes=tuple(split.classes),
    )


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    input_size: tuple[int, int] | None = None,
    normalize: tuple[float, float] | None = None,
    resize_mode: str = "tensor",
) -> torch.Tensor:
    """Class probabilities (N, classes) for uint8 images (N, 1, 28, 28)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    probabilities = model(preprocess(images.to(device), input_size, normalize, resize_mode=resize_mode)).float().softmax(1)
    model.train(was_training)
    return probabilities.cpu()


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
