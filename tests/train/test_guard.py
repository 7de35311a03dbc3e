"""The divergence guard: NaN and exploding losses stop a run, and its last finite checkpoint stays."""

import math

import pytest
import torch

from cnnzoo.train import TrainingDiverged, load_checkpoint
from cnnzoo.workflows import train_run
from cnnzoo.train.callbacks import FitState
from cnnzoo.train.guard import DivergenceGuard


def _diverging(quick_config, lr, epochs=3):
    return quick_config.replace(optimizer="sgd", lr=lr, momentum=0.0, warmup_epochs=0, schedule="constant",
                                epochs=epochs, limit_train=256, limit_test=128, batch_size=128)


@pytest.mark.parametrize("lr, what", [(1e30, "loss"), (1e6, "exploded")])
def test_a_diverging_run_stops_in_its_first_epoch_and_keeps_a_finite_checkpoint(tmp_path, quick_config, lr, what):
    with pytest.raises(TrainingDiverged, match=rf"{what}.*epoch 1, step \d+.*lower it.*last finite checkpoint, epoch 0"):
        train_run(_diverging(quick_config, lr), out=tmp_path, name="div", quiet=True)
    checkpoint = load_checkpoint(tmp_path / "div")  # loads: it is finite (load refuses NaN weights)
    assert checkpoint.meta["epoch"] == 0


def test_an_exploding_but_finite_loss_is_caught_although_it_never_becomes_nan(tmp_path, quick_config):
    # SGD at lr 1e6 is finite for many epochs (the issue measured loss 6.7e13 at epoch 3, rc 0).
    with pytest.raises(TrainingDiverged, match=r"exploded to .*more than 100 times the run's first loss"):
        train_run(_diverging(quick_config, 1e6), out=tmp_path, name="boom", quiet=True)


def _state(losses, steps_per_epoch, model=None, history=None):
    from cnnzoo.train import TrainConfig
    from cnnzoo.train.history import History

    runtime = type("R", (), {"device": torch.device("cpu")})()
    return FitState(config=TrainConfig(), model=model or torch.nn.Linear(2, 2), optimizer=None, runtime=runtime,
                    run_dir=None, history=history or History(), steps_per_epoch=steps_per_epoch, start_epoch=0,
                    losses=torch.tensor(losses))


def _run_epoch(guard, state):
    guard.on_fit_start(state)
    guard.on_epoch_start(state)
    for state.step in range(state.steps_per_epoch):
        guard.on_step_end(state)


def test_the_guard_reads_the_losses_every_n_steps_and_names_the_first_bad_step():
    state = _state([2.3, 2.0, 1.9, math.nan, 1.0, 1.0, 1.0, 1.0], 8)
    guard = DivergenceGuard(check_every=4)
    guard.on_fit_start(state)
    guard.on_epoch_start(state)
    for state.step in range(3):
        guard.on_step_end(state)  # steps 1-3: nothing read yet
    state.step = 3
    with pytest.raises(TrainingDiverged, match="became nan at epoch 1, step 4"):
        guard.on_step_end(state)


def test_explosion_is_relative_to_the_runs_first_loss_even_after_a_resume():
    from cnnzoo.train.history import History

    calm = _state([0.5, 0.4, 40.0, 0.3], 4)
    _run_epoch(DivergenceGuard(), calm)  # 40 < 100 x max(0.5, 1): noise, not divergence
    resumed = _state([0.3, 0.2, 0.3, 0.2], 4, history=History(batch_loss=[0.001, 0.3]))
    _run_epoch(DivergenceGuard(factor=100), resumed)
    exploded = _state([2.3, 2.0, 231.0, 0.3], 4)
    with pytest.raises(TrainingDiverged, match=r"step 3"):
        _run_epoch(DivergenceGuard(), exploded)


def test_weights_made_nan_by_the_epochs_last_update_stop_the_run_before_it_is_saved():
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.bias[0] = math.inf
    with pytest.raises(TrainingDiverged, match=r"last update made bias NaN or infinite"):
        _run_epoch(DivergenceGuard(), _state([2.3, 2.2], 2, model=model))
