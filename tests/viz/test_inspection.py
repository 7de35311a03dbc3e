"""inspect_model against references computed here from the model itself: forward hooks, the weights,
and Grad-CAM and saliency from autograd's gradients in float64."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.data import InputSpec
from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model, list_models
from cnnzoo.viz.inspection import inspect_model

CLASSES = [f"class {k}" for k in range(10)]


def _images(count: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(4)
        self.head = nn.Linear(4 * 7 * 7, 3)

    def forward(self, x):
        return self.head(self.pool(self.act(self.conv(x))).flatten(1))


def test_feature_maps_equal_forward_hooks_outputs_and_filters_equal_the_weights():
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    images = _images()
    inputs = InputSpec()(images)
    seen = {}
    handles = [module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.detach()))
               for name, module in model.named_modules() if name and not list(module.children())]
    with torch.no_grad():
        logits = model(inputs)
    for handle in handles:
        handle.remove()

    inspection = inspect_model(model, images, classes=CLASSES)
    assert list(inspection.activations) == list(seen)
    for name, value in seen.items():
        np.testing.assert_array_equal(inspection.activations[name], value.numpy())
    np.testing.assert_array_equal(inspection.filters, model.features[0].weight.detach().numpy())
    assert inspection.filter_layer == "features.0"
    np.testing.assert_allclose(inspection.probabilities, logits.double().softmax(1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(inspection.images, images[:, 0].numpy())
    assert not any(module._forward_hooks for module in model.modules())  # the hooks are gone again


def test_gradcam_and_saliency_equal_a_direct_computation_from_the_gradients_in_float64():
    torch.manual_seed(1)
    model = Tiny().double().eval()
    images = _images(4)
    inspection = inspect_model(model, images, classes=["a", "b", "c"], layer="act", target="b")

    inputs = InputSpec()(images, dtype=torch.float64).requires_grad_(True)  # what inspect_model feeds
    np.testing.assert_array_equal(inspection.inputs, inputs.detach().numpy())
    maps = model.act(model.conv(inputs))
    scores = model.head(model.pool(maps).flatten(1))[:, 1].sum()
    map_grads, input_grads = torch.autograd.grad(scores, [maps, inputs])
    weights = map_grads.mean(dim=(2, 3), keepdim=True)  # Grad-CAM: each map's mean gradient ...
    cam = F.relu((weights * maps).sum(1, keepdim=True))  # ... weighs it; the positive part of the sum
    cam = F.interpolate(cam, size=(28, 28), mode="bilinear", align_corners=False)[:, 0]

    assert inspection.gradcam_layer == "act" and inspection.targets.tolist() == [1, 1, 1, 1]
    assert inspection.gradcam.dtype == np.float64
    np.testing.assert_allclose(inspection.gradcam, cam.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(inspection.saliency, input_grads.abs()[:, 0].numpy(), rtol=1e-10, atol=1e-12)
    assert inspection.gradcam.max() > 0


def test_the_default_target_is_the_predicted_class_and_the_model_keeps_its_mode():
    torch.manual_seed(2)
    model = Tiny().train()
    inspection = inspect_model(model, _images(5), classes=["a", "b", "c"])
    assert model.training
    np.testing.assert_array_equal(inspection.targets, inspection.probabilities.argmax(1))
    assert inspection.gradcam_layer == "pool"  # the last layer with maps wider than a pixel
    assert [len(row) for row in inspection.top_k(2)] == [2] * 5


@pytest.mark.parametrize("bad, message", [
    ({"target": "zebra"}, "no class is named 'zebra'"),
    ({"target": 7}, "target class 7 is out of range"),
    ({"layer": "nowhere"}, "no layer named 'nowhere'"),
    ({"layer": "head"}, "not maps"),
])
def test_a_wrong_target_or_layer_is_one_sentence(bad, message):
    with pytest.raises(CnnzooError, match=message):
        inspect_model(Tiny(), _images(1), classes=["a", "b", "c"], **bad)


def _smallest_size(name: str) -> int:
    for size in (28, 32, 68):
        try:
            build_model(name, num_classes=10, in_channels=1, input_size=size)
            return size
        except CnnzooError:
            continue
    raise AssertionError(f"{name} builds at none of 28, 32, 68 pixels")


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_can_be_inspected(name):
    size = _smallest_size(name)
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=1, input_size=size)
    inspection = inspect_model(model, _images(2), classes=CLASSES, input_spec=InputSpec(input_size=size))
    assert inspection.probabilities.shape == (2, 10)
    assert inspection.gradcam.shape == inspection.saliency.shape == (2, size, size)
    assert np.isfinite(inspection.gradcam).all() and np.isfinite(inspection.saliency).all()
    assert inspection.filters.ndim == 4 and inspection.feature_layers()
    assert inspection.activations[inspection.gradcam_layer].shape[-1] > 1
