"""The hand-written batch norm trains lenet_bn as well as torch's layer does."""

import pytest

from cnnzoo.cli import main
from cnnzoo.models import build_model
from cnnzoo.nn.batchnorm import BatchNorm1d, BatchNorm2d
from cnnzoo.train import load_checkpoint


def test_norm_flag_swaps_every_bn_layer():
    for name in ("lenet_bn", "resnet18", "vgg11_bn", "alexnet_bn"):
        layers = [m for m in build_model(name, norm="scratch").modules() if "BatchNorm" in type(m).__name__]
        assert layers and all(isinstance(m, (BatchNorm1d, BatchNorm2d)) for m in layers), name


@pytest.mark.slow
def test_lenet_bn_one_epoch_scratch_and_torch_norm_agree_within_one_point(tmp_path, data_root):
    accuracies = {}
    for norm in ("scratch", "torch"):
        code = main(["train", "--model", "lenet_bn", "--dataset", "fashion-mnist", "--epochs", "1", "--norm", norm,
                     "--device", "cpu", "--seed", "0", "--out", str(tmp_path), "--name", norm, "--quiet"])
        assert code == 0
        accuracies[norm] = load_checkpoint(tmp_path / norm).meta["history"]["epochs"][-1]["test_acc"]
        assert load_checkpoint(tmp_path / norm).config["norm"] == norm
    assert abs(accuracies["scratch"] - accuracies["torch"]) <= 0.01, accuracies
    assert min(accuracies.values()) >= 0.80
