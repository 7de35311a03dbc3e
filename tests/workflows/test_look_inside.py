"""cnnzoo.inspect: run directories, test indices and image files in, framed and fed as predict does."""

import numpy as np
import pytest
import torch
from PIL import Image

import cnnzoo
from cnnzoo.data import load_image, load_split
from cnnzoo.errors import CnnzooError
from cnnzoo.train import predict
from cnnzoo.workflows import load_trained
from cnnzoo.workflows.look_inside import gather_images, inspect


def test_cnnzoo_inspect_is_the_workflow():
    assert cnnzoo.inspect is inspect


def test_a_run_with_test_indices_and_a_file_agrees_with_predict(trained_lenet_run, tmp_path, data_root):
    test = load_split("fashion-mnist", "test", root=data_root)
    big = tmp_path / "big.png"  # dark on light and 4x larger: framed and inverted as predict does
    Image.fromarray(255 - test.images[3, 0].numpy()).resize((112, 112)).save(big)
    inspection = inspect(trained_lenet_run, [5, big, 9])
    trained = load_trained(trained_lenet_run)
    framed = load_image(big, framing="fashion-mnist")
    pixels = torch.stack([test.images[5], framed, test.images[9]])
    expected = predict(trained.model, pixels, **trained.input_spec.kwargs()).double().numpy()
    np.testing.assert_allclose(inspection.probabilities, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(inspection.images[1], framed[0].numpy())
    assert inspection.sources == ["test #5", "big.png", "test #9"]
    assert inspection.labels is None  # a file has no true class
    assert inspection.classes == tuple(trained.classes)

    labelled = inspect(trained, [5, 9], target="Sneaker")
    assert labelled.labels.tolist() == [int(test.labels[5]), int(test.labels[9])]
    assert labelled.targets.tolist() == [trained.classes.index("Sneaker")] * 2


def test_a_bare_model_and_a_tensor():
    torch.manual_seed(0)
    model = cnnzoo.build_model("lenet5")
    image = torch.randint(0, 256, (28, 28), dtype=torch.uint8)
    inspection = inspect(model, image)
    assert inspection.classes == tuple(str(k) for k in range(10)) and inspection.images.shape == (1, 28, 28)


@pytest.mark.parametrize("images, message", [
    ([], "no images to inspect"),
    ([10_000_000], "test index 10000000 is out of range"),
    (torch.zeros(1, 1, 28, 28), "must be uint8"),
    ([2.5], "cannot inspect float"),
])
def test_wrong_images_are_one_sentence(images, message, data_root):
    with pytest.raises(CnnzooError, match=message):
        gather_images(images, "fashion-mnist", data_dir=str(data_root))


def test_a_bare_model_is_fed_as_its_training_config_says(data_root):
    from cnnzoo.data import InputSpec

    config = cnnzoo.TrainConfig(model="resnet18", input_size=32, data_dir=str(data_root))
    torch.manual_seed(0)
    inspection = inspect(cnnzoo.build_model("resnet18", input_size=32), [0, 1], config=config)
    test = load_split("fashion-mnist", "test", root=data_root)
    np.testing.assert_array_equal(inspection.inputs, InputSpec.from_config(config)(test.images[:2]).numpy())
    assert inspection.labels.tolist() == test.labels[:2].tolist()
