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
