"""load_trained: a run's model restored with what feeds it, from its best checkpoint or its last."""

import pytest

from cnnzoo.errors import CnnzooError
from cnnzoo.train.checkpoint import load_model_state
from cnnzoo.train.trained import load_trained
from cnnzoo.workflows import train_run


def test_load_trained_restores_the_model(tmp_path, quick_config):
    run_dir, history = train_run(quick_config.replace(epochs=1), out=tmp_path, name="r", quiet=True)
    trained = load_trained(run_dir.path, which="last")
    assert trained.classes[0] == "T-shirt/top"
    with pytest.raises(CnnzooError, match="does not fit"):
        from cnnzoo.models import build_model

        load_model_state(build_model("lenet5", num_classes=7), trained.model.state_dict())


def test_best_is_taken_when_there_is_one_else_last(tmp_path, quick_config):
    run_dir, _ = train_run(quick_config.replace(epochs=2, val_split=0.2), out=tmp_path, name="r", quiet=True)
    assert run_dir.checkpoint("best") == run_dir.best_checkpoint and run_dir.checkpoint("last") == run_dir.last_checkpoint
    best_epoch = load_trained(run_dir.path).meta["epoch"]
    run_dir.best_checkpoint.unlink()
    assert run_dir.checkpoint("best") == run_dir.last_checkpoint
    assert load_trained(run_dir.path).meta["epoch"] == 2 >= best_epoch


# ---------------------------------------------------------------- one place decides whether weights are usable
import json  # noqa: E402

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from cnnzoo.cli import main  # noqa: E402
from cnnzoo.train import Callback  # noqa: E402
from cnnzoo.train.checkpoint import UnusableWeights, load_checkpoint, save_checkpoint, tensor_checksum  # noqa: E402


class _Stop(Exception):
    pass


class _StopInFirstEpoch(Callback):  # a crash (or a divergence) before any epoch ends
    def on_step_end(self, state):
        raise _Stop


@pytest.fixture(scope="module")
def stopped_in_epoch_1(tmp_path_factory, data_root):
    from cnnzoo.train import TrainConfig

    out = tmp_path_factory.mktemp("epoch1")
    config = TrainConfig(model="lenet5", dataset="fashion-mnist", epochs=2, batch_size=64, limit_train=256,
                         limit_test=64, data_dir=str(data_root), device="cpu")
    with pytest.raises(_Stop):
        train_run(config, out=out, name="r", quiet=True, callbacks=[_StopInFirstEpoch()])
    assert load_checkpoint(out / "r").meta["epoch"] == 0
    return out / "r"


def test_every_command_refuses_the_untrained_start_of_a_run(stopped_in_epoch_1, tmp_path, capsys):
    with pytest.raises(UnusableWeights, match=r"untrained weights .* `cnnzoo train --resume "):
        load_trained(stopped_in_epoch_1)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(image)
    for argv in (["evaluate", stopped_in_epoch_1], ["predict", stopped_in_epoch_1, image],
                 ["export", stopped_in_epoch_1, "-o", tmp_path / "m.onnx"],
                 ["finetune", "--from", stopped_in_epoch_1, "--epochs", "1", "--out", tmp_path, "--name", "ft"]):
        assert main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "untrained weights" in err and err.count("\n") == 0, (argv, err)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "ft").exists()


def test_weights_whose_output_overflows_are_refused_not_printed_as_nan(tmp_path, quick_config):
    run_dir, _ = train_run(quick_config.replace(epochs=1, limit_train=256, limit_test=64), out=tmp_path, name="r",
                           quiet=True)
    trained = load_trained(run_dir.path)
    with torch.no_grad():
        trained.model.state_dict()["classifier.5.weight"].fill_(3e38)  # finite, but the logits overflow
    save_checkpoint(run_dir.last_checkpoint, trained.model, {k: v for k, v in trained.meta.items()
                                                             if k not in ("format", "version", "checksum")})
    with pytest.raises(UnusableWeights, match="overflows to NaN or infinity"):
        load_trained(run_dir.path)


def test_a_config_json_that_contradicts_the_checkpoint_is_refused(tmp_path, quick_config):
    run_dir, _ = train_run(quick_config.replace(epochs=1, limit_train=256, limit_test=64), out=tmp_path, name="r",
                           quiet=True)
    values = json.loads(run_dir.config_path.read_text())
    run_dir.config_path.write_text(json.dumps({**values, "dataset": "mnist"}))
    with pytest.raises(CnnzooError, match=r"config\.json says dataset is 'mnist' but .*last\.safetensors says "
                                          r"'fashion-mnist'"):
        load_trained(run_dir.path)
    run_dir.config_path.write_text(json.dumps({**values, "classes": list("abcdefghij")}))
    with pytest.raises(CnnzooError, match="says classes is"):
        load_trained(run_dir.path)
