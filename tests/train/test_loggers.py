"""TensorBoard and MLflow loggers, each read back with the library's own reader."""

import re
import sys

import pytest

from cnnzoo.errors import CnnzooError
from cnnzoo.train import Callback, RunDir
from cnnzoo.workflows import resume_run, train_run
from cnnzoo.train.loggers import MLflowLogger, TensorBoardLogger


@pytest.fixture
def log_config(quick_config):
    return quick_config.replace(limit_train=256, limit_test=64, batch_size=64, epochs=2)


def test_tensorboard_events_hold_steps_epochs_hparams_and_graph(tmp_path, log_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run_dir, history = train_run(log_config, out=tmp_path, name="tb", quiet=True, callbacks=[TensorBoardLogger()])
    events = EventAccumulator(str(run_dir.path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()

    steps = events.Scalars("step/loss")
    assert [e.step for e in steps] == list(range(len(history.batch_loss))) == list(range(8))
    assert [e.value for e in steps] == pytest.approx(history.batch_loss, rel=1e-6)
    assert [e.value for e in events.Scalars("step/lr")] == pytest.approx(history.batch_lr, rel=1e-6)
    for column in ("train_loss", "train_acc", "test_acc"):
        logged = events.Scalars(f"epoch/{column}")
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx([row[column] for row in history.epochs], rel=1e-6)
    assert "epoch/val_acc" not in events.Tags()["scalars"]  # no validation split, so nothing to log

    graph = events.Graph()  # LeNet-5: two convolutions and three dense layers
    layers = {match.group(0) for node in graph.node if (match := re.search(r"(Conv2d|Linear)\[\w+\]", node.name))}
    assert sorted(layers) == ["Conv2d[0]", "Conv2d[3]", "Linear[1]", "Linear[3]", "Linear[5]"]
    assert {"aten::_convolution", "aten::linear"} <= {node.op for node in graph.node}

    content = events.PluginTagToContent("hparams")
    plugin = [HParamsPluginData.FromString(blob) for blob in content.values()]
    start = next(p.session_start_info for p in plugin if p.HasField("session_start_info"))
    assert start.hparams["lr"].number_value == pytest.approx(log_config.lr)
    assert start.hparams["model"].string_value == "lenet5"
    assert start.hparams["hflip"].string_value == "false"
    assert any(p.HasField("session_end_info") for p in plugin)  # it finished


class _CutAfterFirstEpoch(Callback):
    def on_epoch_end(self, state):
        if state.epoch == 0:
            raise KeyboardInterrupt


def test_mlflow_run_holds_params_metrics_and_layer_table_and_resume_continues_it(tmp_path, log_config):
    from mlflow.tracking import MlflowClient

    with pytest.raises(KeyboardInterrupt):
        train_run(log_config, out=tmp_path, name="ml", quiet=True, callbacks=[MLflowLogger(), _CutAfterFirstEpoch()])
    run_dir = RunDir(tmp_path / "ml")
    record = run_dir.read_json("mlflow.json")
    assert record["tracking_uri"] == (run_dir.path / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    assert client.get_run(record["run_id"]).info.status == "KILLED"

    _, history = resume_run(run_dir.path, quiet=True, callbacks=[MLflowLogger()])
    assert run_dir.read_json("mlflow.json")["run_id"] == record["run_id"]  # the same run, continued
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == str(log_config.lr) and run.data.params["model"] == "lenet5"
    steps = sorted(client.get_metric_history(record["run_id"], "step/loss"), key=lambda m: m.step)
    assert [m.step for m in steps] == list(range(8))
    assert [m.value for m in steps] == pytest.approx(history.batch_loss, rel=1e-6)
    test_acc = sorted(client.get_metric_history(record["run_id"], "epoch/test_acc"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in test_acc] == [(r["epoch"], pytest.approx(r["test_acc"])) for r in history.epochs]
    artifacts = [a.path for a in client.list_artifacts(record["run_id"])]
    assert "model_summary.txt" in artifacts
    table = client.download_artifacts(record["run_id"], "model_summary.txt", str(tmp_path))
    assert "61,706" in open(table, encoding="utf-8").read()


@pytest.mark.parametrize("logger, flag", [(TensorBoardLogger, "--tensorboard"), (MLflowLogger, "--mlflow")])
def test_a_missing_package_is_one_sentence(monkeypatch, logger, flag):
    package = "tensorboard" if logger is TensorBoardLogger else "mlflow"
    monkeypatch.setitem(sys.modules, package, None)  # what importlib sees when it is not installed
    with pytest.raises(CnnzooError, match=f"{flag} needs the {package} package.*pip install 'cnnzoo\\[{package}\\]'"):
        logger()


def test_a_damaged_mlflow_json_stops_resume_with_one_sentence_naming_it(tmp_path, log_config):
    with pytest.raises(KeyboardInterrupt):
        train_run(log_config, out=tmp_path, name="ml", quiet=True, callbacks=[MLflowLogger(), _CutAfterFirstEpoch()])
    record = tmp_path / "ml" / RunDir.MLFLOW
    record.write_text("[1, 2]")  # once an AttributeError from record.get
    with pytest.raises(CnnzooError, match=f"^{record} is damaged .*not an object; delete it") as caught:
        resume_run(tmp_path / "ml", quiet=True, callbacks=[MLflowLogger()])
    assert "\n" not in str(caught.value)
