"""Export round trips: ONNX through onnxruntime and TorchScript through torch.jit.load match PyTorch on real images."""

import json
import warnings

import onnx
import onnxruntime
import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.data import load_split, preprocess
from cnnzoo.errors import CnnzooError
from cnnzoo.workflows.export import export_model
from cnnzoo.train import TrainConfig, save_checkpoint
from cnnzoo.workflows import load_trained
from cnnzoo.workflows.finetune import finetune_config, pretrained_model
from cnnzoo.workflows.run import model_for


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, data_root, tv_weights):
    """Checkpoints of an untrained LeNet-5 and a ResNet-18 fine-tuning start (resize 28->64, ImageNet stats)."""
    folder = tmp_path_factory.mktemp("export")
    classes = list(load_split("fashion-mnist", "test", root=data_root).classes)
    lenet = TrainConfig(model="lenet5", dataset="fashion-mnist", data_dir=str(data_root))
    resnet = finetune_config("torchvision:resnet18", input_size=64, data_dir=str(data_root))
    paths = {}
    for name, config, model in (("lenet5", lenet, model_for(lenet, 10)),
                                ("resnet18", resnet, pretrained_model(resnet, 10, weights=tv_weights))):
        paths[name] = save_checkpoint(folder / f"{name}.safetensors", model,
                                      {"config": config.to_dict(), "classes": classes, "epoch": 0})
    return paths


def _run_exported(path, fmt):
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_exported_model_matches_pytorch_on_real_images(tmp_path, checkpoints, data_root, name, fmt):
    out = tmp_path / f"{name}.{fmt}"
    result = export_model(checkpoints[name], out, format=fmt)
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left behind

    trained = load_trained(checkpoints[name])
    run = _run_exported(out, fmt)
    images = load_split("fashion-mnist", "test", root=data_root).images[100:107]
    for n in (1, 7):
        with torch.no_grad():
            expected = trained.model(preprocess(images[:n], **trained.input_spec.kwargs()))
        torch.testing.assert_close(run(images[:n]), expected, rtol=0, atol=1e-4)

    if fmt == "onnx":
        metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    else:
        extra = {"classes.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.load(str(out), _extra_files=extra)
        metadata = {"classes": extra["classes.json"]}
    assert json.loads(metadata["classes"]) == trained.classes


@pytest.mark.parametrize("name, size", [("nin", 68), ("googlenet", 32), ("densenet", 32)])
def test_parallel_paths_and_concatenations_export_to_onnx(tmp_path, data_root, name, size):
    # Inception's four paths and DenseNet's concatenations through onnxruntime, at small inputs to stay quick.
    config = TrainConfig(model=name, dataset="fashion-mnist", input_size=size, data_dir=str(data_root))
    classes = list(load_split("fashion-mnist", "test", root=data_root).classes)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / f"{name}.safetensors", model_for(config, 10),
                                 {"config": config.to_dict(), "classes": classes, "epoch": 0})
    result = export_model(checkpoint, tmp_path / f"{name}.onnx", format="onnx")
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_resizes_as_the_run_did(tmp_path, data_root, fmt):
    # The export had its own preprocessing: bilinear on floats, whatever resize_mode the run trained with.
    # ResNet-18's logits are the most sensitive to its input: bilinear instead of PIL moves them by ~5e-5.
    config = TrainConfig(model="resnet18", dataset="fashion-mnist", data_dir=str(data_root), input_size=36,
                         resize_mode="pil")
    classes = list(load_split("fashion-mnist", "test", root=data_root).classes)
    checkpoint = save_checkpoint(tmp_path / "pil.safetensors", model_for(config, 10),
                                 {"config": config.to_dict(), "classes": classes, "epoch": 0})
    out = tmp_path / f"pil.{fmt}"
    export_model(checkpoint, out, format=fmt)
    trained = load_trained(checkpoint)
    assert trained.input_spec.resize_mode == "pil"
    images = load_split("fashion-mnist", "test", root=data_root).images[:7]
    with torch.no_grad():
        expected = trained.model(trained.input_spec(images))
    torch.testing.assert_close(_run_exported(out, fmt)(images), expected, rtol=0, atol=2e-6)


def test_cli_export_and_its_errors(tmp_path, checkpoints, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(checkpoints["lenet5"]), "-o", str(out)]) == 0
    assert "matches PyTorch" in capsys.readouterr().out and out.is_file()
    assert main(["export", str(checkpoints["lenet5"]), "--format", "torchscript", "--no-check",
                 "-o", str(tmp_path / "model.pt")]) == 0
    assert "not checked" in capsys.readouterr().out
    assert main(["export", str(checkpoints["lenet5"]), "-o", str(tmp_path / "missing" / "m.onnx")]) == 2
    with pytest.raises(CnnzooError, match="Unknown export format"):
        export_model(checkpoints["lenet5"], tmp_path / "m.tflite", format="tflite")


def test_non_finite_logits_fail_the_check_instead_of_matching_to_zero(tmp_path, data_root):
    # Finite but huge weights overflow to inf logits; inf - inf is NaN, and max(0.0, nan) used to read 0.0.
    from cnnzoo.workflows.run import model_for

    config = TrainConfig(model="lenet5", dataset="fashion-mnist", data_dir=str(data_root))
    model = model_for(config, 10)
    with torch.no_grad():
        model.state_dict()["classifier.5.weight"].fill_(3e38)
    classes = [str(i) for i in range(10)]
    path = save_checkpoint(tmp_path / "huge.safetensors", model, {"config": config.to_dict(), "classes": classes,
                                                                  "epoch": 0})
    # load_trained refuses such weights first, as evaluate and predict do (they printed nan).
    with pytest.raises(CnnzooError, match="overflows to NaN or infinity"):
        export_model(path, tmp_path / "model.pt", format="torchscript")
    assert not (tmp_path / "model.pt").exists()


def test_keras_export_is_the_twin_and_matches_pytorch(tmp_path, checkpoints, data_root, capsys):
    import cnnzoo.keras

    keras = cnnzoo.keras.import_keras()
    out = tmp_path / "lenet5.keras"
    result = export_model(checkpoints["lenet5"], out, format="keras")
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left behind

    trained = load_trained(checkpoints["lenet5"])
    loaded = keras.saving.load_model(out)
    assert loaded.name == "lenet5" and loaded.count_params() == 61_706
    images = load_split("fashion-mnist", "test", root=data_root).images[100:107]
    x = trained.input_spec(images)
    with torch.no_grad():
        expected = trained.model(x)
    got = torch.from_numpy(keras.ops.convert_to_numpy(loaded(x.permute(0, 2, 3, 1).numpy(), training=False)))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    back = cnnzoo.keras.to_torch(loaded)
    assert all(torch.equal(a, b) for a, b in zip(trained.model.state_dict().values(), back.state_dict().values()))

    assert main(["export", str(checkpoints["lenet5"]), "--format", "keras", "-o", str(tmp_path / "cli.keras")]) == 0
    printed = capsys.readouterr().out
    assert "float N×28×28×1 in" in printed and "mean 0.286" in printed and "matches PyTorch" in printed


def test_keras_export_refuses_another_suffix_and_a_failed_check_leaves_nothing(tmp_path, checkpoints, monkeypatch):
    import cnnzoo.workflows.export as export

    with pytest.raises(CnnzooError, match="must end in .keras"):
        export_model(checkpoints["lenet5"], tmp_path / "m.h5", format="keras")
    monkeypatch.setattr(export, "CHECK_TOLERANCE", -1.0)  # every real difference now fails the check
    with pytest.raises(CnnzooError, match="differ from PyTorch's"):
        export_model(checkpoints["lenet5"], tmp_path / "m.keras", format="keras")
    assert not list(tmp_path.iterdir())


def test_a_full_disk_during_a_torchscript_export_is_one_sentence_not_an_abort(tmp_path, checkpoints, monkeypatch,
                                                                            no_space):
    # torch.jit.save writing the file itself aborted the process (exit 134) on a full disk.
    from pathlib import Path

    from cnnzoo.atomic import DiskFull

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(DiskFull, match="model.pt was not written"):
        export_model(checkpoints["lenet5"], tmp_path / "model.pt", format="torchscript")
    assert list(tmp_path.iterdir()) == []
