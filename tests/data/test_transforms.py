"""InputSpec (what a model is fed, from a config) and preprocess, the uint8 -> model-input conversion."""

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from PIL import Image

from cnnzoo.data import DATASETS, InputSpec, load_split, preprocess, resolve_input_size
from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model
from cnnzoo.train import TrainConfig


def test_preprocess_basic():
    x = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    assert torch.allclose(preprocess(x), torch.tensor([[[[0.0, 1.0], [0.2, 0.4]]]]))
    assert preprocess(x[0]).shape == (1, 2, 2)
    assert preprocess(x, normalize=(0.5, 0.5))[0, 0, 0, 1].item() == pytest.approx(1.0)
    assert preprocess(x, input_size=(4, 6)).shape == (1, 1, 4, 6)
    with pytest.raises(TypeError):
        preprocess(x.float())


@pytest.mark.parametrize("size", [224, 96, 32, 14])
def test_resize_matches_torchvision(data_root, size):
    images = load_split("fashion-mnist", "test", root=data_root).images[:32]
    ours = preprocess(images, size)
    assert ours.shape == (32, 1, size, size)
    # torchvision Resize on float tensors: the same computation
    ref = TF.resize(images.float() / 255, [size, size])
    assert (ours - ref).abs().max() < 1e-5
    # torchvision Resize on uint8 tensors works in fixed point and rounds to whole levels
    ref_u8 = TF.resize(images, [size, size]).float() / 255
    assert (ours - ref_u8).abs().max() <= 1 / 255 + 1e-6


def test_resize_close_to_course_pil_pipeline(data_root):
    """The course resized PIL images then ToTensor; our device-side resize stays within a few levels."""
    images = load_split("fashion-mnist", "test", root=data_root).images[:8]
    course = T.Compose([T.Resize(224), T.ToTensor()])
    ref = torch.stack([course(Image.fromarray(img[0].numpy())) for img in images])
    ours = preprocess(images, 224)
    assert (ours - ref).abs().mean() < 1.0 / 255
    assert (ours - ref).abs().max() < 8.0 / 255


def test_normalize_gives_zero_mean_unit_std(data_root):
    info = DATASETS["fashion-mnist"]
    x = preprocess(load_split("fashion-mnist", "train", root=data_root).images, normalize=info.normalize)
    assert x.mean().item() == pytest.approx(0.0, abs=2e-4)
    assert x.std().item() == pytest.approx(1.0, abs=2e-4)


def test_preprocess_of_an_empty_batch_has_the_requested_size():
    empty = torch.zeros(0, 1, 28, 28, dtype=torch.uint8)
    assert preprocess(empty, 224).shape == (0, 1, 224, 224)
    assert preprocess(empty, 14).shape == (0, 1, 14, 14)


def test_from_config_takes_the_model_default_and_the_data_set_statistics():
    spec = InputSpec.from_config(TrainConfig(model="alexnet", dataset="mnist"))
    assert spec == InputSpec((224, 224), DATASETS["mnist"].mean, DATASETS["mnist"].std, "tensor")
    assert spec.normalize == DATASETS["mnist"].normalize
    config = TrainConfig(model="lenet5", dataset="fashion-mnist", input_size=32, resize_mode="pil")
    assert InputSpec.from_config(config).kwargs() == {"input_size": (32, 32), "normalize": DATASETS["fashion-mnist"].normalize,
                                                      "resize_mode": "pil"}
    assert InputSpec.from_config(config.replace(normalize=False)).normalize is None
    # A pretrained body expects its own statistics.
    assert InputSpec.from_config(config.replace(normalize_mean=0.5, normalize_std=0.25)).normalize == (0.5, 0.25)
    # config.json's dict gives the same answer as the TrainConfig it was written from.
    assert InputSpec.from_config(config.to_dict()) == InputSpec.from_config(config)


def test_the_spec_is_preprocess_with_its_settings():
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    spec = InputSpec(32, 0.3, 0.4, "pil")
    assert torch.equal(spec(images), preprocess(images, 32, (0.3, 0.4), resize_mode="pil"))
    assert spec(images, dtype=torch.bfloat16).dtype == torch.bfloat16
    with torch.no_grad():
        assert torch.equal(spec.module()(images), spec(images))
    assert torch.equal(InputSpec().module()(images), preprocess(images))


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 0}, "input_size must be"),
    ({"mean": 0.5}, "both mean and std"),
    ({"mean": 0.5, "std": 0.0}, "positive standard deviations"),
    ({"resize_mode": "cv2"}, "resize_mode must be one of"),
])
def test_a_bad_spec_is_refused_when_made(kwargs, match):
    with pytest.raises(CnnzooError, match=match):
        InputSpec(**kwargs)


@pytest.mark.parametrize("size", [True, (28, False), "28", 2.5, (28,), 2000])
def test_data_and_models_refuse_the_same_input_sizes(size):
    # One rule: a bool used to pass build_model (True == 1), and preprocess took sizes no model is built for.
    with pytest.raises(CnnzooError, match="input_size must be|larger than cnnzoo builds"):
        build_model("resnet18", input_size=size)
    with pytest.raises(CnnzooError, match="input_size must be|larger than cnnzoo builds"):
        resolve_input_size(size)


def test_sizes_in_any_sequence():
    assert resolve_input_size(None) is None
    assert resolve_input_size(torch.Size([32, 36])) == resolve_input_size([32, 36]) == (32, 36)
    assert build_model("lenet5", input_size=torch.Size([32, 36])).classifier[1].in_features == 16 * 6 * 7
