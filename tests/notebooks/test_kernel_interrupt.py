"""Jupyter's interrupt button during training, in a real kernel: the run stops after the current
step with one clear line, the live area says so, and the run resumes.

Nothing here depends on how fast the machine is: the kernel holds the run inside epoch 2's first step
(a callback) until the test's interrupt has reached cnnzoo's signal handler, so the stop always lands
in epoch 2, however quickly epochs go by."""

import queue
import time
from pathlib import Path

from hold_for_interrupt import HOLDING

TRAIN = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import cnnzoo
from hold_for_interrupt import HoldForInterrupt

config = cnnzoo.TrainConfig(model="lenet5", epochs=30, batch_size=32, optimizer="adamw", lr=3e-3,
                            limit_train=1024, limit_test=128)
cnnzoo.train_run(config, out="runs", name="run", callbacks=[HoldForInterrupt()])
"""


def _messages(client, msg_id, until, timeout=600):
    """iopub messages of one execution until `until(msg)` or the cell finishes."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if until(msg) or (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"):
            return seen
    raise AssertionError(f"no end after {timeout} s: {[m['msg_type'] for m in seen]}")


def test_interrupting_the_kernel_stops_training_and_leaves_the_run_resumable(kernel_specs, tmp_path):
    from jupyter_client import KernelManager

    manager = KernelManager(kernel_name="cnnzoo-tests", kernel_spec_manager=kernel_specs)
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        msg_id = client.execute(TRAIN)
        # The kernel says when it holds the run in epoch 2 (epoch 1 is checkpointed); then interrupt.
        started = _messages(client, msg_id, lambda m: m["msg_type"] == "stream"
                            and HOLDING in m["content"]["text"])
        assert started[-1]["msg_type"] == "stream", [m["content"] for m in started if m["msg_type"] in ("error", "stream")]
        manager.interrupt_kernel()
        rest = _messages(client, msg_id, lambda m: False)
        (error,) = [m["content"] for m in rest if m["msg_type"] == "error"]
        assert error["ename"] == "TrainingInterrupted" and "resume with" in error["evalue"]
        assert error["traceback"] == [f"TrainingInterrupted: {error['evalue']}"]  # one line, no internals
        final = [m for m in rest if m["msg_type"] == "update_display_data"][-1]["content"]["data"]["text/plain"]
        assert final.startswith("stopped in epoch 2/30")

        msg_id = client.execute('_, history = cnnzoo.resume_run("runs/run", epochs=2, progress="none")\n'
                                'print([row["epoch"] for row in history.epochs])')
        resumed = _messages(client, msg_id, lambda m: False)
        assert not [m for m in resumed if m["msg_type"] == "error"]
        printed = "".join(m["content"]["text"] for m in resumed if m["msg_type"] == "stream")
        assert "[1, 2]" in printed
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
