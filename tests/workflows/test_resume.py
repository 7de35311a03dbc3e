"""resume_run: an interrupted run, resumed, equals the uninterrupted one."""

import pytest
import torch

from cnnzoo.train import Callback, load_checkpoint
from cnnzoo.workflows import resume_run, train_run


def _metrics(history):
    return [{k: v for k, v in row.items() if k not in ("time_s", "images_per_s")} for row in history.epochs]


class _StopAfter(Exception):
    pass


@pytest.mark.parametrize("model,fused", [("lenet5", "off"), ("lenet5", "on"), ("alexnet_bn", "off")])
def test_interrupted_then_resumed_run_equals_uninterrupted_run(tmp_path, quick_config, model, fused):
    # alexnet_bn has dropout and BN running statistics: RNG state and buffers must both survive resume.
    # Fused kernels read optimizer state with the parameter's strides, which are channels_last here.
    # Random erasing: the resumed epochs must erase the same pixels as the uninterrupted run's.
    config = quick_config.replace(model=model, epochs=3, schedule="cosine", warmup_epochs=1, hflip=True,
                                  crop_padding=2, random_erasing=0.5, limit_train=256 if model != "lenet5" else 1024,
                                  limit_test=64 if model != "lenet5" else 256, input_size=None if model == "lenet5" else 72,
                                  fused_optimizer=fused, channels_last="on")
    _, full = train_run(config, out=tmp_path, name="full", quiet=True)

    class CrashAfterFirst(Callback):  # a crash, not a clean stop: the run must resume from its checkpoint
        def on_epoch_end(self, state):
            if state.epoch == 0:
                raise _StopAfter

    with pytest.raises(_StopAfter):
        train_run(config, out=tmp_path, name="cut", quiet=True, callbacks=[CrashAfterFirst()])
    assert load_checkpoint(tmp_path / "cut").meta["epoch"] == 1
    _, resumed = resume_run(tmp_path / "cut", quiet=True)
    assert _metrics(resumed) == _metrics(full)
    assert resumed.batch_loss == full.batch_loss
    a = load_checkpoint(tmp_path / "full").model_state
    b = load_checkpoint(tmp_path / "cut").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- what a resume may not believe, and stuck states
import json  # noqa: E402

from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from cnnzoo.errors import CnnzooError  # noqa: E402
from cnnzoo.train.checkpoint import tensor_checksum  # noqa: E402


def _rewrite(path, change_meta=None, change_tensors=None):
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["cnnzoo"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    (change_meta or (lambda m: None))(meta)
    (change_tensors or (lambda t: None))(tensors)
    meta["checksum"] = tensor_checksum(tensors, meta)
    save_file(tensors, path, metadata={"cnnzoo": json.dumps(meta)})


@pytest.fixture
def one_epoch_of_two(tmp_path, quick_config):
    config = quick_config.replace(epochs=2, schedule="cosine", limit_train=256, limit_test=64)

    class Crash(Callback):
        def on_epoch_end(self, state):
            raise _StopAfter

    with pytest.raises(_StopAfter):
        train_run(config, out=tmp_path, name="r", quiet=True, callbacks=[Crash()])
    return tmp_path / "r"


def test_a_checkpoint_whose_missing_field_would_change_the_run_is_refused(one_epoch_of_two):
    last = one_epoch_of_two / "checkpoints" / "last.safetensors"
    _rewrite(last, lambda m: m["config"].pop("schedule"))  # would read as the default: a constant rate
    with pytest.raises(CnnzooError, match=r"config\.json says schedule is 'cosine' but .* says 'constant'"):
        resume_run(one_epoch_of_two, quiet=True)


def test_nan_in_the_loss_history_is_refused_not_fed_to_the_divergence_guard(one_epoch_of_two):
    last = one_epoch_of_two / "checkpoints" / "last.safetensors"
    _rewrite(last, change_tensors=lambda t: t["history.batch_loss"].__setitem__(0, float("nan")))
    with pytest.raises(CnnzooError, match="history 'batch_loss' holds NaN"):
        resume_run(one_epoch_of_two, quiet=True)


def test_a_run_stopped_before_its_evaluation_is_finished_by_resume(tmp_path, quick_config):
    run_dir, _ = train_run(quick_config.replace(epochs=1, limit_train=256, limit_test=64), out=tmp_path, name="r",
                           quiet=True)
    evaluation = json.loads(run_dir.evaluation_path.read_text())
    run_dir.evaluation_path.unlink()
    run_dir.report_path.unlink()  # as a kill after the last checkpoint (or a full disk) leaves it
    resume_run(run_dir.path, quiet=True)
    assert json.loads(run_dir.evaluation_path.read_text())["accuracy"] == evaluation["accuracy"]
    assert run_dir.report_path.is_file()
    with pytest.raises(CnnzooError, match=r"has already trained 1 epochs and is finished; pass --epochs N with N "
                                          r"larger than 1"):
        resume_run(run_dir.path, quiet=True)


def test_a_finished_early_stopped_run_is_finished_with_its_best_epochs_weights(tmp_path, quick_config):
    # min_delta 0.9: no epoch counts as progress, so training stops after epoch 3, its last, while the
    # accuracy still moves (as in tests/train/test_early_stopping.py).
    config = quick_config.replace(val_split=0.25, epochs=3, early_stop=2, early_stop_min_delta=0.9, lr=3e-2,
                                  limit_test=64)
    run_dir, history = train_run(config, out=tmp_path, name="r", quiet=True)
    scores = [row["val_acc"] for row in history.epochs]
    assert scores.index(max(scores)) + 1 < 3, scores  # else the best epoch's weights are the last's
    evaluation = json.loads(run_dir.evaluation_path.read_text())
    run_dir.evaluation_path.unlink()
    run_dir.report_path.unlink()
    (run_dir.path / "early_stopping.json").write_text("[1, 2]")  # resume reads the checkpoint's history instead
    resume_run(run_dir.path, quiet=True)
    assert json.loads(run_dir.evaluation_path.read_text())["confusion"] == evaluation["confusion"]


def test_a_run_killed_after_early_stopping_is_finished_by_resume_not_trained_on(tmp_path, quick_config):
    # lr 1e-20 changes no weight: a flat validation accuracy, so patience 2 stops after epoch 3 of 8.
    config = quick_config.replace(limit_train=256, limit_test=64, val_split=0.25, optimizer="sgd", momentum=0.0,
                                  lr=1e-20, epochs=8, early_stop=2)
    run_dir, history = train_run(config, out=tmp_path, name="r", quiet=True)
    assert len(history.epochs) == 3
    evaluation = json.loads(run_dir.evaluation_path.read_text())
    run_dir.evaluation_path.unlink()
    run_dir.report_path.unlink()  # a kill after the last checkpoint
    _, finished = resume_run(run_dir.path, quiet=True)
    assert len(finished.epochs) == 3 and len(run_dir.read_metrics()) == 3
    assert json.loads(run_dir.evaluation_path.read_text())["confusion"] == evaluation["confusion"]
    assert run_dir.report_path.is_file()
    with pytest.raises(CnnzooError, match=r"already stopped early after epoch 3 \(no validation progress for 2 "
                                          r"epochs\) and is finished, so there is nothing to resume"):
        resume_run(run_dir.path, quiet=True, epochs=20)


def test_an_epochs_below_what_was_trained_names_both_counts(tmp_path, quick_config):
    # It once said "already finished its 1 epochs" of a run that had trained 2.
    from cnnzoo.workflows.resume import resume_plan

    run_dir, _ = train_run(quick_config.replace(epochs=2, limit_train=128, limit_test=32), out=tmp_path, name="r",
                           quiet=True)
    with pytest.raises(CnnzooError, match=r"has already trained 2 epochs, more than the --epochs 1 asked for"):
        resume_plan(run_dir.path, epochs=1)


def test_a_run_stopped_before_its_first_checkpoint_names_the_command_that_redoes_it(tmp_path, quick_config):
    from cnnzoo.train.rundir import RunDir

    run = RunDir.create(tmp_path, "r")
    run.write_json(RunDir.CONFIG, quick_config.to_dict())  # a kill right after config.json
    run.unlock()
    with pytest.raises(CnnzooError, match=r"stopped before it wrote its first checkpoint.*--name r --overwrite"):
        resume_run(run.path, quiet=True)
