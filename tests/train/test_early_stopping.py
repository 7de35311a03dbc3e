"""Early stopping on a validation plateau made exact, the best epoch's weights restored, the patience
count carried through --resume, and the record in the run directory."""

import json

import pytest
import torch

from cnnzoo.data import load_data
from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model
from cnnzoo.train import Callback, RunDir, fit, load_checkpoint
from cnnzoo.workflows import resume_run, train_run
from cnnzoo.train.early_stopping import EarlyStopping, EarlyStopStatus


@pytest.fixture
def plateau(quick_config):
    # Plain SGD at lr 1e-20 changes no float32 weight by even one ulp, so every epoch's validation
    # accuracy is exactly the first one's: a plateau by construction, not by luck.
    return quick_config.replace(limit_train=256, limit_test=64, val_split=0.25, optimizer="sgd", momentum=0.0,
                                lr=1e-20, epochs=8, early_stop=3)


def _record(run_dir):
    return json.loads((run_dir.path / "early_stopping.json").read_text())


def _rows(history):
    return [{k: v for k, v in row.items() if k not in ("time_s", "images_per_s")} for row in history.epochs]


def test_a_plateau_stops_after_patience_epochs_and_resume_refuses_to_continue(tmp_path, plateau):
    run_dir, history = train_run(plateau, out=tmp_path, name="plateau", quiet=True)
    assert len({row["val_acc"] for row in history.epochs}) == 1  # the plateau really is flat
    assert [row["epoch"] for row in history.epochs] == [1, 2, 3, 4]
    record = _record(run_dir)
    assert (record["stopped_epoch"], record["best_epoch"], record["weights_epoch"]) == (4, 1, 1)
    assert record["epochs_without_progress"] == 3 and record["patience"] == 3
    assert len(run_dir.read_metrics()) == 4
    assert load_checkpoint(run_dir.last_checkpoint).meta["epoch"] == 4
    with pytest.raises(CnnzooError, match="already stopped early after epoch 4"):
        resume_run(run_dir.path, quiet=True)


class _CutAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_the_patience_count_survives_resume(tmp_path, plateau):
    _, full = train_run(plateau, out=tmp_path, name="full", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        train_run(plateau, out=tmp_path, name="cut", quiet=True, callbacks=[_CutAfter(2)])
    cut = RunDir(tmp_path / "cut")
    assert _record(cut)["epochs_without_progress"] == 1 and _record(cut)["stopped_epoch"] is None
    _, resumed = resume_run(cut.path, quiet=True)
    # A counter restarted at 0 would train to epoch 5.
    assert _rows(resumed) == _rows(full) and len(resumed.epochs) == 4
    assert _record(cut)["stopped_epoch"] == 4


def test_the_model_ends_with_the_best_epochs_weights(tmp_path, quick_config):
    # min_delta 0.9 means no epoch ever counts as progress: training stops after 1 + patience epochs,
    # while the accuracy still moves, so the best epoch is a real choice.
    config = quick_config.replace(limit_train=1024, val_split=0.25, epochs=6, early_stop=2, early_stop_min_delta=0.9,
                                  lr=3e-2)
    data = load_data(config.dataset, root=config.data_dir, val_split=0.25, seed=config.seed,
                     limit_train=config.limit_train, limit_test=config.limit_test)
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    run_dir = RunDir.create(tmp_path, "best")
    history = fit(model, data, config, run_dir=run_dir, quiet=True)
    scores = [row["val_acc"] for row in history.epochs]
    assert len(scores) == 3
    best_epoch = scores.index(max(scores)) + 1
    assert best_epoch < 3, scores  # else the restore would be a no-op and prove nothing
    record = _record(run_dir)
    assert record["best_epoch"] == best_epoch == record["weights_epoch"] and record["stopped_epoch"] == 3
    best = load_checkpoint(run_dir.best_checkpoint)
    assert best.meta["epoch"] == best_epoch
    assert all(torch.equal(v.cpu(), best.model_state[k]) for k, v in model.state_dict().items())


def test_status_counts_progress_by_min_delta_and_best_by_the_highest_score():
    rows = [{"epoch": e, "val_acc": v} for e, v in enumerate([0.80, 0.805, 0.79, 0.81, 0.812], start=1)]
    # 0.805 beats 0.80 but not by more than 0.01, nor does 0.81; 0.812 does.
    status = EarlyStopStatus.replay(rows, patience=4, min_delta=0.01)
    assert status.best_epoch == 5 and status.reference == 0.812 and status.epochs_without_progress == 0
    assert status.stopped_epoch is None
    status = EarlyStopStatus.replay(rows, patience=3, min_delta=0.01)
    assert status.stopped_epoch == 4 and status.best_epoch == 4 and status.reference == 0.80


@pytest.mark.parametrize("changes, words", [
    ({"early_stop": 3}, "needs --val-split"),
    ({"early_stop": 0, "val_split": 0.1}, "positive whole number"),
    ({"early_stop_min_delta": 0.01}, "only with --early-stop"),
    ({"early_stop": 2, "val_split": 0.1, "early_stop_min_delta": -0.1}, "fraction in [0, 1)"),
])
def test_bad_early_stopping_settings_are_one_sentence(quick_config, changes, words):
    with pytest.raises(CnnzooError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        quick_config.replace(**changes).validate()


@pytest.mark.parametrize("patience, min_delta", [
    (3, 0.0), (1, 0.5), (0, 0.0), (-1, 0.0), (True, 0.0), (2.0, 0.0), ("3", 0.0),
    (3, 1), (3, 1.5), (3, -0.1), (3, float("nan")), (3, float("inf")), (3, True), (3, "0.1"),
])
def test_the_callback_takes_exactly_the_settings_a_run_takes(quick_config, patience, min_delta):
    def refusal(make):
        try:
            make()
        except CnnzooError as error:
            return str(error)
        return None

    run = refusal(lambda: quick_config.replace(val_split=0.1, early_stop=patience,
                                               early_stop_min_delta=min_delta).validate())
    assert refusal(lambda: EarlyStopping(patience, min_delta)) == run


def test_the_callback_needs_a_patience_where_a_run_reads_none_as_off():
    with pytest.raises(CnnzooError, match="^--early-stop must be a positive whole number of epochs, got None.$"):
        EarlyStopping(None)


def test_without_validation_data_the_callback_says_what_to_pass(quick_config):
    data = load_data(quick_config.dataset, root=quick_config.data_dir, limit_train=256, limit_test=64)
    with pytest.raises(CnnzooError, match="--val-split"):
        fit(build_model("lenet5"), data, quick_config.replace(epochs=1), quiet=True, callbacks=[EarlyStopping(1)])
