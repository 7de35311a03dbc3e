"""load_trained: a run's model restored with what feeds it, from its best checkpoint or its last."""

import pytest

from cnnzoo.errors import CnnzooError
from cnnzoo.train.checkpoint import load_model_state
from cnnzoo.workflows import load_trained, train_run


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
