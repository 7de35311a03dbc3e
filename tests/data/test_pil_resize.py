"""The course resize: Pillow's uint8 bilinear resize reproduced bit for bit on tensors."""

import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from cnnzoo.data import BatchIterator, load_split, preprocess
from cnnzoo.data.pil_resize import pil_resize
from cnnzoo.errors import CnnzooError


def course_pipeline(images: torch.Tensor, size) -> torch.Tensor:
    """What the course feeds its model: torchvision's Resize on each PIL image, then ToTensor."""
    transform = T.Compose([T.Resize(size), T.ToTensor()])
    return torch.stack([transform(Image.fromarray(image[0].numpy(), mode="L")) for image in images])


@pytest.fixture(scope="module")
def real_images(data_root):
    return load_split("fashion-mnist", "test", root=data_root).images[:64]


@pytest.mark.parametrize("size", [224, 96, 64, 32, 20, (28, 40), (13, 28)])
def test_course_resize_equals_torchvision_pil_resize_to_tensor_bit_for_bit(real_images, size):
    expected = course_pipeline(real_images, size)
    assert torch.equal(preprocess(real_images, size, resize_mode="pil"), expected)


def test_the_float_path_is_not_on_the_uint8_grid(real_images):
    # Why the course needs its own path: interpolated floats leave the 1/255 grid.
    expected = course_pipeline(real_images[:8], 224)
    floats = preprocess(real_images[:8], 224)
    assert 0 < (floats - expected).abs().max() <= 1 / 255 + 1e-6
    assert torch.equal(pil_resize(real_images[:8], (224, 224)).float().div(255), expected)


def test_batches_resize_as_the_course(real_images, data_root):
    split = load_split("fashion-mnist", "test", root=data_root)
    batches = BatchIterator(split, 16, shuffle=False, input_size=96, resize_mode="pil")
    x, _ = next(iter(batches))
    assert torch.equal(x, course_pipeline(split.images[:16], 96))


def test_unknown_resize_mode_is_one_clear_error(real_images):
    with pytest.raises(CnnzooError, match="resize_mode must be one of tensor, pil"):
        preprocess(real_images[:1], 32, resize_mode="cv2")
