"""Every zoo model's Keras twin: the same parameter counts, the same logits on real test images, the
same weights back, and the same accuracy band when the twin trains in Keras."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import cnnzoo.keras as ck
from cnnzoo.data import InputSpec, load_split
from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model, list_models
from cnnzoo.train import TrainConfig, evaluate, fit
from cnnzoo.workflows.run import data_for, model_for

keras = ck.import_keras()


def _randomize_batch_norms(model: nn.Module, seed: int = 0) -> None:
    """Statistics and affine parameters far from the 0/1 defaults, so that a swapped or dropped one shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(getattr(module, "running_var", None), torch.Tensor):
                n = module.running_var.numel()
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)


def _images(data_root, model: nn.Module, n: int) -> torch.Tensor:
    """n real Fashion-MNIST test images as ``model`` takes them: resized, normalized, gray copied to C channels."""
    channels, *size = model.input_shape
    spec = InputSpec(tuple(size), 0.286, 0.353)
    x = spec(load_split("fashion-mnist", "test", root=data_root).images[:n])
    return x.expand(-1, channels, -1, -1).contiguous()


def _keras_logits(twin, x: torch.Tensor, data_format: str = "channels_last") -> torch.Tensor:
    inputs = x.permute(0, 2, 3, 1).numpy() if data_format == "channels_last" else x.numpy()
    return torch.from_numpy(keras.ops.convert_to_numpy(twin(inputs, training=False)))


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_has_a_twin_with_its_counts_logits_and_weights(name, data_root):
    torch.manual_seed(0)
    model = build_model(name).eval()
    _randomize_batch_norms(model)
    twin = ck.from_torch(model)

    trainable = sum(p.numel() for p in model.parameters())
    statistics = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert sum(int(np.prod(w.shape)) for w in twin.trainable_weights) == trainable
    assert twin.count_params() == trainable + statistics

    x = _images(data_root, model, 2 if trainable > 20_000_000 else 8)
    with torch.no_grad():
        expected = model(x)
    assert _relative_error(_keras_logits(twin, x), expected) <= 1e-5

    torch.manual_seed(1)
    back = ck.to_torch(twin)  # rebuilt from the twin's name, input shape and classes
    assert type(back) is type(model)
    original, returned = model.state_dict(), back.state_dict()
    assert original.keys() == returned.keys()
    for key, tensor in original.items():
        if key.endswith("num_batches_tracked"):
            assert returned[key].item() == 0  # Keras has no such counter
        else:
            assert torch.equal(returned[key], tensor), key  # bit for bit


def test_lenet5_summary_is_the_materials_table():
    lines = []
    ck.build_model("lenet5").summary(print_fn=lambda line, **_: lines.append(line))
    table = "\n".join(lines)
    rows = [line for line in table.splitlines() if "(Conv2D)" in line or "(Dense)" in line]
    counts = [int(row.split("│")[-2].strip().replace(",", "")) for row in rows]
    assert counts == [156, 2416, 48120, 10164, 850]
    assert "Total params: 61,706" in table
    names = [row.split("│")[1].split("(")[0].strip() for row in rows]
    assert names == ["conv1", "conv2", "dense1", "dense2", "dense3"]


def test_lenet_bn_summary_counts_statistics_as_keras_does():
    lines = []
    ck.build_model("lenet_bn").summary(print_fn=lambda line, **_: lines.append(line))
    table = "\n".join(lines)
    assert "Total params: 45,330" in table and "Trainable params: 44,878" in table
    assert "Non-trainable params: 452" in table


def test_the_materials_keras_alexnet_bn_summary_totals():
    lines = []
    ck.build_model("alexnet_bn_keras", softmax=True).summary(print_fn=lambda line, **_: lines.append(line))
    table = "\n".join(lines)
    assert "Total params: 25,730,506" in table and "Trainable params: 25,709,350" in table
    assert "softmax (Activation)" in table  # the material's final layer


def test_twins_are_sequential_for_chains_and_functional_for_skips():
    assert isinstance(ck.build_model("alexnet"), keras.Sequential)
    resnet = ck.build_model("resnet18")
    assert not isinstance(resnet, keras.Sequential)
    assert sum(type(layer).__name__ == "Add" for layer in resnet.layers) == 8


def test_inception_paths_and_dense_layers_meet_in_concatenate_layers():
    googlenet, densenet = ck.build_model("googlenet"), ck.build_model("densenet")
    assert sum(type(layer).__name__ == "Concatenate" for layer in googlenet.layers) == 9  # one per Inception block
    assert sum(type(layer).__name__ == "Concatenate" for layer in densenet.layers) == 16  # one per dense layer
    assert googlenet.count_params() == 5_977_530


def test_batch_norm_hyperparameters_are_translated():
    twin = ck.build_model("lenet_bn")
    norms = [layer for layer in twin.layers if type(layer).__name__ == "BatchNormalization"]
    assert len(norms) == 4
    for layer in norms:
        assert layer.momentum == pytest.approx(0.9)  # the fraction kept; PyTorch's momentum=0.1
        assert layer.epsilon == pytest.approx(1e-5)  # PyTorch's, not Keras's 1e-3


def test_keras_batch_norm_updates_the_moving_variance_with_the_biased_variance():
    # The one difference a translation cannot remove (documented in twins.py): checked in float64 by hand.
    twin = ck.build_model("lenet_bn")
    layer = twin.get_layer("bn3")  # after dense1: (N, 120)
    before = keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
    x = np.random.default_rng(0).normal(size=(16, 120)).astype(np.float32)
    layer(x, training=True)
    after = keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
    biased = x.astype(np.float64).var(axis=0)
    np.testing.assert_allclose(after, 0.9 * before + 0.1 * biased, rtol=1e-5)
    unbiased = x.astype(np.float64).var(axis=0, ddof=1)
    assert not np.allclose(after, 0.9 * before + 0.1 * unbiased, rtol=1e-3)


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "densenet"])  # densenet: Concatenate on axis 1
def test_channels_first_twins_give_the_same_logits(name, data_root):
    torch.manual_seed(0)
    model = build_model(name).eval()
    _randomize_batch_norms(model)
    twin = ck.from_torch(model, data_format="channels_first")
    assert twin.inputs[0].shape[1:] == model.input_shape
    x = _images(data_root, model, 4)
    with torch.no_grad():
        expected = model(x)
    assert _relative_error(_keras_logits(twin, x, "channels_first"), expected) <= 1e-5
    back = ck.to_torch(twin)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), back.parameters()))


def test_a_softmax_twin_gives_the_probabilities_and_converts_back(data_root):
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    twin = ck.from_torch(model, softmax=True)
    assert twin.layers[-1].name == "softmax"
    x = _images(data_root, model, 4)
    with torch.no_grad():
        expected = model(x).softmax(dim=1)
    torch.testing.assert_close(_keras_logits(twin, x), expected, rtol=1e-5, atol=1e-7)
    back = ck.to_torch(twin)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), back.parameters()))


def test_model_options_travel_both_ways():
    torch.manual_seed(0)
    model = build_model("lenet5_classic", activation="relu").eval()
    twin = ck.from_torch(model)
    assert twin.get_layer("conv1").activation.__name__ == "relu"
    back = ck.to_torch(twin, activation="relu")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), back.parameters()))


def test_a_twin_built_with_other_options_is_refused_not_filled_in_wrong():
    # Weights alone match: a ReLU LeNet's would load into the tanh one and answer differently.
    relu = ck.from_torch(build_model("lenet5_classic", activation="relu"))
    with pytest.raises(CnnzooError, match="conv1 differs from LeNet's in activation"):
        ck.to_torch(relu)
    with pytest.raises(CnnzooError, match="dropout1 differs from AlexNet's in rate"):
        ck.to_torch(ck.build_model("alexnet", dropout=0.3))
    imitation = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(6, 5, padding="same", name="conv1"),
                                  keras.layers.Flatten(name="flatten"), keras.layers.Dense(10, name="dense1")],
                                 name="lenet5")
    with pytest.raises(CnnzooError, match="layers \\(conv1, flatten, dense1\\) are not LeNet's"):
        ck.to_torch(imitation)


def test_misuse_is_one_sentence():
    twin = ck.build_model("lenet5")
    with pytest.raises(CnnzooError, match="reads num_classes from the twin"):
        ck.to_torch(twin, num_classes=10)
    with pytest.raises(CnnzooError, match="to_torch takes a built Keras model"):
        ck.to_torch(build_model("lenet5"))
    with pytest.raises(CnnzooError, match="from_torch takes a PyTorch nn.Module, not a Sequential"):
        ck.from_torch(twin)
    with pytest.raises(CnnzooError, match=r"LeNet does not take inputs of shape \(1, 32, 32\) \(mat1"):
        ck.from_torch(build_model("lenet5"), (1, 32, 32))


def test_conversion_errors_name_the_problem():
    torch.manual_seed(0)
    twin = ck.from_torch(build_model("resnet18"))
    with pytest.raises(CnnzooError, match="conv1 differs from ResNet18's in use_bias"):
        ck.to_torch(twin, conv_bias=True)  # a twin without conv biases into a model with them
    plain = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)], name="mine")
    with pytest.raises(CnnzooError, match="not after a zoo model"):
        ck.to_torch(plain)
    with pytest.raises(CnnzooError, match="layers .* are not LeNet's"):
        ck.to_torch(plain, build_model("lenet5"))
    broken = build_model("lenet5")
    with torch.no_grad():
        broken.features[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(CnnzooError, match="NaN or infinite"):
        ck.from_torch(broken)
    with pytest.raises(CnnzooError, match="holds torch.float64 weights"):
        ck.from_torch(build_model("lenet5").double())
    with pytest.raises(CnnzooError, match="input shape is unknown"):
        ck.from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(CnnzooError, match="Unknown data_format"):
        ck.build_model("lenet5", data_format="NHWC")


def test_non_finite_keras_weights_are_refused():
    twin = ck.build_model("lenet5")
    kernel = twin.get_layer("dense2").kernel
    values = keras.ops.convert_to_numpy(kernel).copy()
    values[0, 0] = np.inf
    kernel.assign(values)
    with pytest.raises(CnnzooError, match="dense2 holds NaN or infinite"):
        ck.to_torch(twin)


@pytest.fixture(scope="module")
def trained(data_root):
    """LeNet-5 and LeNet-BN after one epoch of cnnzoo's own loop (Adam 2e-3, batch 128), with the data and
    the untrained LeNet-5's weights (as a twin) for the Keras run."""
    base = TrainConfig(model="lenet5", dataset="fashion-mnist", epochs=1, batch_size=128, optimizer="adam",
                       lr=2e-3, eps=1e-8, init="keras", normalize=False, data_dir=str(data_root), device="cpu",
                       precision="fp32", compile="off")
    data = data_for(base, torch.device("cpu"))
    models, start = {}, None
    for name in ("lenet5", "lenet_bn"):
        config = dataclasses.replace(base, model=name)
        model = model_for(config, 10)
        if name == "lenet5":
            start = ck.from_torch(model)
        fit(model, data, config, progress="none", quiet=True)
        models[name] = model.eval()
    return models, data, base, start


@pytest.mark.parametrize("name", ["lenet5", "lenet_bn"])
def test_trained_twins_agree_on_the_whole_test_set(name, trained):
    models, data, config, _ = trained
    model = models[name]
    x = InputSpec.from_config(config)(data.test.images)
    with torch.no_grad():
        expected = model(x)
    twin = ck.from_torch(model)
    got = torch.from_numpy(keras.ops.convert_to_numpy(twin.predict(x.permute(0, 2, 3, 1).numpy(), batch_size=1000,
                                                                   verbose=0)))
    assert len(x) == 10_000
    agreement = (got.argmax(1) == expected.argmax(1)).float().mean().item()
    assert agreement >= 0.999
    assert _relative_error(got, expected) <= 1e-5


def test_the_lenet5_twin_trained_by_keras_lands_in_cnnzoos_accuracy_band(trained):
    models, data, config, twin = trained
    spec = InputSpec.from_config(config)
    ours = evaluate(models["lenet5"], data.test, **spec.kwargs()).accuracy
    keras.utils.set_random_seed(0)
    twin.compile(optimizer=keras.optimizers.Adam(2e-3, epsilon=1e-8),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    twin.fit(spec(data.train.images).permute(0, 2, 3, 1).numpy(), data.train.labels.numpy(), batch_size=128,
             epochs=1, shuffle=True, verbose=0)
    _, theirs = twin.evaluate(spec(data.test.images).permute(0, 2, 3, 1).numpy(), data.test.labels.numpy(),
                              batch_size=1000, verbose=0)
    assert ours > 0.6  # both really learned: chance is 0.1
    assert abs(theirs - ours) <= 0.02, (ours, theirs)
