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
    (lambda m: m["history"]["epochs"][0].pop("epoch"), "history.epochs' holds a row whose epoch is None"),
    (lambda m: m.update(grad_scaler={"scale": 65536.0}), "'grad_scaler'"),
    (lambda m: m.update(grad_scaler={"scale": float("nan"), "growth_factor": 2.0, "backoff_factor": 0.5,
                                     "growth_interval": 2000, "_growth_tracker": 0}), "grad_scaler.scale"),
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


# ---------------------------------------------------------------- metrics.csv, batch_loss.csv, evaluation.json
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cnnzoo.errors import CnnzooError  # noqa: E402
from cnnzoo.train.schema import (BATCH_LOSS_COLUMNS, METRICS_COLUMNS, METRICS_OPTIONAL, DocumentError,  # noqa: E402
                                 check_evaluation, check_table)

_GOOD_METRICS = ("epoch,train_loss,train_acc,val_acc,test_acc,lr,time_s,images_per_s,train_images,val_images,"
                 "test_images\n1,0.9,0.7,,0.75,0.01,2.5,100.0,128,,32\n2,0.5,0.8,,0.8,0.01,2.4,101.0,128,,32\n")
_FIELDS = _GOOD_METRICS.split("\n")[1].split(",")


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_bytes_as_a_table_are_rows_or_one_document_error(data):
    for columns, optional in ((METRICS_COLUMNS, METRICS_OPTIONAL), (BATCH_LOSS_COLUMNS, ())):
        try:
            rows = check_table(data, "metrics.csv", columns, optional)
        except DocumentError as error:
            assert "\n" not in str(error) and str(error).startswith("metrics.csv is damaged")
        else:
            assert all(set(row) == set(columns) for row in rows)


@given(st.integers(0, len(_FIELDS) - 1), st.one_of(
    st.sampled_from(["nan", "inf", "-1", "abc", "0x10", "1e999", "9" * 500, "2.0", "", "\x00", "é"]),
    st.text(max_size=20)))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_damaged_metrics_cell_is_refused_or_read_as_a_checked_number(column, text):
    fields = list(_FIELDS)
    fields[column] = text
    lines = _GOOD_METRICS.split("\n")
    data = "\n".join([lines[0], ",".join(fields), *lines[2:]]).encode()
    try:
        rows = check_table(data, "m.csv", METRICS_COLUMNS, METRICS_OPTIONAL)
    except DocumentError:
        return
    for row in rows:
        for name, value in row.items():
            assert value is None or (isinstance(value, (int, float)) and value == value and abs(value) != float("inf"))
            if name.endswith("_acc") and value is not None:
                assert 0 <= value <= 1
        assert row["time_s"] > 0


@pytest.mark.parametrize("data, words", [
    (b"\xff\xfe", "not UTF-8"),
    (_GOOD_METRICS.replace("train_loss,", "").encode(), "'train_loss' is missing"),
    (_GOOD_METRICS.replace(",2.5,", ",0,").encode(), "time_s is 0"),
    (_GOOD_METRICS.replace(",0.75,", ",1.5,").encode(), "'test_acc'"),
    (_GOOD_METRICS.replace(",0.75,", ",nan,").encode(), "not a finite number"),
    (_GOOD_METRICS.replace("\n2,", "\n1,").encode(), "does not follow"),
    (_GOOD_METRICS.replace(",0.75,", "," + "7" * 200 + ",").encode(), "characters long"),
    (_GOOD_METRICS.replace(",32\n2", "\n2").encode(), "fields, not the 11"),
])
def test_damaged_metrics_name_the_file_and_what_is_wrong(data, words):
    with pytest.raises(DocumentError, match=words):
        check_table(data, "run/metrics.csv", METRICS_COLUMNS, METRICS_OPTIONAL)


_GOOD_EVALUATION = {"split": "test", "accuracy": 0.5, "images": 4, "loss": 0.7, "classes": ["a", "b"],
                    "per_class_accuracy": [0.5, 0.5], "confusion": [[1, 1], [1, 1]],
                    "misclassified": [{"index": 3, "true": 0, "pred": 1, "confidence": 0.9}]}


def test_a_good_evaluation_is_read_as_written():
    assert check_evaluation(json.loads(json.dumps(_GOOD_EVALUATION)), "e.json") == _GOOD_EVALUATION


@given(st.sampled_from(sorted(_GOOD_EVALUATION)), st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(), st.text(max_size=5),
    st.lists(st.integers(-1, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
@settings(max_examples=400, deadline=None)
def test_a_damaged_evaluation_field_is_refused_or_harmless(field, value):
    values = {**json.loads(json.dumps(_GOOD_EVALUATION)), field: value}
    try:
        checked = check_evaluation(values, "e.json")
    except DocumentError as error:
        assert "e.json" in str(error) and "\n" not in str(error)
        return
    assert 0 <= checked["accuracy"] <= 1 and len(checked["confusion"]) == len(checked["classes"])


@pytest.mark.parametrize("name, text", [
    ("metrics.csv", "epoch,train_loss\n1,abc\n"), ("metrics.csv", b"\xff\xfe\x00"),
    ("metrics.csv", _GOOD_METRICS.replace(",2.5,", ",0,").replace(",2.4,", ",0,")),
    ("batch_loss.csv", "step,epoch,loss,lr\n0,1,nan,0.1\n"), ("batch_loss.csv", "step,epoch\n0,1\n"),
    ("evaluation.json", '{"accuracy": "high"}'), ("evaluation.json", '{"accuracy": 0.5, "classes": 3}'),
    ("evaluation.json", b'{"accuracy": \xff}'),
])
def test_report_and_compare_refuse_a_damaged_run_file_in_one_sentence(tmp_path, finished_run, capsys, name, text):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    readers = [["report", run]]
    if name != "batch_loss.csv":  # compare reads no per-step losses
        readers.append(["compare", "--runs", run, "--out", tmp_path])
    for argv in readers:
        _one_error(capsys, argv, str(run / name))
