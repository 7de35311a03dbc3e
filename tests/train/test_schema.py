"""config.json and checkpoint metadata are checked on every read, by every command that reads them."""

import json
import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from cnnzoo.cli import main
from cnnzoo.train.checkpoint import tensor_checksum


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("schema")
    assert main(["train", "--model", "lenet5", "--dataset", "fashion-mnist", "--limit-train", "128", "--limit-test",
                 "32", "--batch-size", "64", "--epochs", "1", "--device", "cpu", "--data-dir", str(data_root),
                 "--out", str(out), "--name", "run", "--quiet"]) == 0
    return out / "run"


def _one_error(capsys, argv, *words):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("text, field", [
    ("{broken", "not valid JSON"), ("[1, 2]", "holds a list"), ('{"model": "lenet5"}', "'dataset' is missing"),
    ('{"model": "lenet5", "dataset": "fashion-mnist", "epochs": "3"}', "'epochs' is a string"),
])
def test_report_compare_and_resume_name_the_bad_field_of_config_json(tmp_path, finished_run, capsys, text, field):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "config.json").write_text(text)
    for argv in (["report", run], ["compare", "--runs", run, "--out", tmp_path],
                 ["train", "--resume", run, "--epochs", "2"]):
        _one_error(capsys, argv, "config.json", field)


def _rewrite_meta(path, change):
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["cnnzoo"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(meta)
    meta["checksum"] = tensor_checksum(tensors, meta)
    save_file(tensors, path, metadata={"cnnzoo": json.dumps(meta)})


@pytest.mark.parametrize("change, field", [
    (lambda m: m.update(version="2"), "'version'"),
    (lambda m: m.pop("classes"), "'classes' is missing"),
    (lambda m: m["config"].update(dataset="cifar10"), "unknown data set 'cifar10'"),
    (lambda m: m.pop("epoch"), "'epoch' is missing"),
    (lambda m: m.update(config="not a dict"), "'config' is a string"),
    (lambda m: m["optimizer"].update(param_groups="x"), "optimizer.param_groups"),
    (lambda m: m["history"].update(epochs=[1, 2]), "history.epochs"),
])
def test_predict_evaluate_and_resume_name_the_bad_field_of_checkpoint_metadata(tmp_path, finished_run, capsys,
                                                                              data_root, change, field):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    last = run / "checkpoints" / "last.safetensors"
    _rewrite_meta(last, change)
    image = tmp_path / "image.png"
    shutil.copyfile(finished_run / "loss.png", image)
    for argv in (["predict", run, image, "--device", "cpu"], ["evaluate", run, "--device", "cpu"],
                 ["train", "--resume", run, "--epochs", "2"]):
        _one_error(capsys, argv, str(last), field)
