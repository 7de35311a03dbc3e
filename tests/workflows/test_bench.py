"""`cnnzoo bench` and the CPU-capable fast-path pieces (channels_last, bf16 autocast, the on-device
batch iterator): they must change speed, never predictions."""

import json
from types import SimpleNamespace

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.data import BatchIterator, load_data, preprocess
from cnnzoo.train import TrainConfig, fit
from cnnzoo.train.config import FAST_PATH, SWITCHES
from cnnzoo.workflows import bench as bench_module
from cnnzoo.workflows.bench import FIELDS, EpochCpuTime, cores_used_text, format_table, peak_tflops, steady
from cnnzoo.train.runtime import Runtime
from cnnzoo.workflows.run import model_for


@pytest.fixture(scope="module")
def trained(data_root):
    # Two short epochs so the logits separate the classes; an untrained net's near-ties would make
    # argmax agreement a test of rounding noise rather than of the fast path.
    config = TrainConfig(model="lenet_bn", epochs=2, batch_size=64, optimizer="adamw", lr=3e-3, limit_train=1024,
                         limit_test=512, data_dir=str(data_root), device="cpu", precision="fp32", channels_last="off")
    data = load_data("fashion-mnist", root=data_root, limit_train=1024, limit_test=512)
    model = model_for(config, 10)
    fit(model, data, config, quiet=True)
    return model.eval(), data


def _logits(model, split, normalize, runtime):
    model.to(memory_format=runtime.memory_format)
    batches = BatchIterator(split, 100, shuffle=False, normalize=normalize, channels_last=runtime.channels_last)
    with torch.inference_mode(), runtime.autocast():
        out = torch.cat([model(x).float() for x, _ in batches])
    model.to(memory_format=torch.contiguous_format)
    return out


@pytest.mark.parametrize("switches,atol", [
    ({"channels_last": "on"}, 1e-4),
    ({"precision": "bf16"}, 0.15),
    ({"precision": "bf16", "channels_last": "on"}, 0.15),
])
def test_fast_path_pieces_give_the_plain_paths_predictions(trained, switches, atol):
    model, data = trained
    normalize = (data.info.mean, data.info.std)
    with torch.inference_mode():  # the plain path: one preprocess of the whole split, no iterator
        reference = model(preprocess(data.test.images, normalize=normalize))
    plain = _logits(model, data.test, normalize, Runtime.from_config(TrainConfig(device="cpu", precision="fp32",
                                                                                  channels_last="off")))
    torch.testing.assert_close(plain, reference, atol=1e-5, rtol=1e-5)
    fast = _logits(model, data.test, normalize, Runtime.from_config(TrainConfig(device="cpu", **switches)))
    agreement = (fast.argmax(1) == reference.argmax(1)).double().mean().item()
    assert agreement >= 0.99
    assert (fast - reference).abs().max().item() < atol


def test_steady_state_skips_the_first_epoch():
    assert steady([5.0, 2.0, 4.0]) == ([2, 3], 3.0)


def test_bench_reports_every_fast_path_piece_and_its_table_shows_every_switch():
    assert {piece.name for piece in FAST_PATH} <= set(FIELDS)
    result = {name: None for name in FIELDS} | {name: True for name in SWITCHES} | {
        "model": "lenet5", "dataset": "mnist", "train_images": 1, "input_size": [28, 28], "batch_size": 1,
        "device_name": "cpu", "device": "cpu", "threads": 1, "precision": "fp32", "epoch_s": [1.0, 1.0],
        "steady_s_per_epoch": 1.0, "steady_epochs": [2], "images_per_s": 1.0, "train_flops_per_image": 1.0}
    device = dict(format_table(result))["device"]
    assert all(f"{name}=on" in device for name in SWITCHES), device


def test_one_epoch_has_no_steady_state_and_is_refused(capsys):
    assert main(["bench", "--device", "cpu", "--epochs", "1"]) != 0
    assert "--epochs 2 or more" in capsys.readouterr().err


@pytest.mark.parametrize("extra,limit", [([], "2048"), (["--baseline"], "512")])
def test_bench_json_has_every_field(data_root, capsys, extra, limit):
    code = main(["bench", "--device", "cpu", "--model", "lenet5", "--epochs", "2", "--json", "--limit-train", limit,
                 "--data-dir", str(data_root), *extra])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == list(FIELDS)
    assert result["train_images"] == int(limit) and result["steady_epochs"] == [2]
    assert result["steady_s_per_epoch"] > 0 and result["train_flops_per_image"] > 0
    assert result["fraction_of_peak"] is None and result["peak_memory_kind"] == "cpu_peak_rss"
    # CPU time over wall time of the steady epochs: positive, and no more cores than the process has threads.
    assert 0 < result["cores_used"] <= result["threads"] + 0.5
    assert result["load_average"] >= 0  # Linux has one
    baseline = [result[k] for k in ("baseline_s_per_epoch", "baseline_images_per_s", "speedup_vs_baseline")]
    assert all(v is not None and v > 0 for v in baseline) if extra else all(v is None for v in baseline)


class _Clocks:
    """A CPU clock and a wall clock that move only when the test says: the machine's speed and load,
    and other threads of this process, cannot move them (burning real CPU once failed by 0.2 ms)."""

    def __init__(self) -> None:
        self.cpu = self.wall = 100.0

    def process_time(self) -> float:
        return self.cpu

    def perf_counter(self) -> float:
        return self.wall

    def spend(self, seconds: float, cores: float = 1.0) -> None:
        self.wall += seconds
        self.cpu += seconds * cores


@pytest.mark.parametrize("train_acc", ["running", "eval"])
def test_epoch_cpu_time_spans_what_the_epoch_time_spans(train_acc, monkeypatch):
    clocks = _Clocks()
    monkeypatch.setattr(bench_module, "time", clocks)
    state = SimpleNamespace(config=SimpleNamespace(train_acc=train_acc), step=0, steps_per_epoch=2,
                            epoch_start=clocks.perf_counter())
    clock = EpochCpuTime()
    clock.on_epoch_start(state)
    clocks.spend(0.4, cores=1.5)  # the epoch's two steps, on one and a half cores
    clock.on_step_end(state)  # the epoch's last step
    clocks.spend(0.2)  # the epoch's evaluation, on one core
    clock.on_epoch_end(state)
    assert clock.host_s_per_step == [pytest.approx(0.2)]  # the loop's wall time up to the last step, per step
    # The course's eval-mode training accuracy puts the evaluation inside the epoch's time; otherwise it is outside.
    assert clock.cpu_s == [pytest.approx(0.8 if train_acc == "eval" else 0.6)]


def test_cores_used_warns_only_when_the_run_got_fewer_cores_than_threads():
    shared = cores_used_text({"cores_used": 0.97, "threads": 2, "load_average": 2.4})
    assert shared.startswith("0.97 of 2 threads (load average 2.4 at the start)") and "held a core" in shared
    assert "held a core" not in cores_used_text({"cores_used": 1.9, "threads": 2, "load_average": None})
    assert cores_used_text({"cores_used": None, "threads": 8, "load_average": 0.1}) == "n/a"  # CUDA


def test_peak_of_the_cards_auto_runs_fp16_on():
    assert peak_tflops("Tesla T4", "fp16") == 65.0 and peak_tflops("Tesla V100-SXM2-16GB", "fp16") == 125.0
    assert peak_tflops("NVIDIA H200", "fp16") is None  # auto runs bf16 there; no figure is guessed
