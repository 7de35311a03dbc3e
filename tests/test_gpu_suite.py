"""benchmarks/gpu_suite.py spends scarce GPU minutes: every command it would run must parse here first,
and its plan must fit the one command of 8 minutes it is for."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from cnnzoo.cli import build_parser
from cnnzoo.models import list_models
from cnnzoo.recipes import list_recipes

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"
_spec = importlib.util.spec_from_file_location("gpu_suite", _PATH)
suite = sys.modules["gpu_suite"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(suite)


@pytest.mark.parametrize("quick", [False, True])
def test_every_cnnzoo_command_of_the_suite_parses(tmp_path, quick):
    parser = build_parser()
    items = [item for item in suite.plan("cuda", quick) if item.kind in ("train", "bench")]
    assert len(items) > 15
    for item in items:
        command = suite.command_for(item, "cuda", tmp_path)
        assert command[1:3] == ["-m", "cnnzoo"]
        parser.parse_args(command[3:])  # argparse exits (SystemExit) on an unknown flag or value
    for args in suite.resume_commands("cuda", quick, tmp_path).values():
        parser.parse_args(args)
    recipes = {item.args[item.args.index("--recipe") + 1] for item in items if "--recipe" in item.args}
    assert recipes <= set(list_recipes())


def test_the_plan_covers_every_model_in_priority_order_and_fits_its_stages():
    items = suite.plan("cuda", quick=False)
    names = [item.name for item in items]
    assert len(set(map(suite.slug, names))) == len(names)  # run directories are named by slug
    assert {f"epoch {model}" for model in list_models()} <= set(names)
    assert [item.stage for item in items] == sorted(item.stage for item in items)
    accuracy = [item.name for item in items if item.stage == 3]
    assert names.index("cuda tests") < names.index("epoch lenet5") and accuracy[-1] == "best-fashion-mnist"
    # Stage 2 runs one item at a time: what it expects must fit its window, or its targets go unmeasured.
    speed = sum(item.expect for item in items if item.stage == 2)
    assert speed <= (suite.STAGE_ENDS[2] - suite.STAGE_ENDS[1]) * suite.BUDGET
    assert suite.BUDGET <= 480 - 20  # the command's 8 minutes, with the table and teardown after it
    # The slice compiles the full data's shapes: its last batch is the full data's last batch.
    assert int(suite.slice_for(128)[1]) % 128 == 60_000 % 128
    assert {"lenet5 vs course", "lenet_bn torch norm", "alexnet-224 vs course", "best-fashion-mnist"} == set(suite.TARGETS)


def test_an_item_without_time_left_is_recorded_as_skipped_and_the_table_says_so(tmp_path):
    item = suite.Item("epoch lenet5", 1, "train", ["--model", "lenet5"], expect=60, timeout=120)
    run = suite.Suite([item], "cpu", tmp_path, budget=10)  # 10 s cannot hold an item expected to take 60
    run.run()
    record = json.loads((tmp_path / "gpu_suite.jsonl").read_text().splitlines()[-1])
    assert record["status"] == "skipped" and "needs ~60" in record["why"]
    assert "SKIPPED" in suite.summary_line(item)
    assert all(verdict == "-" for _, _, verdict in suite.checks([item]))


def test_targets_are_judged_from_the_measured_values():
    bench = {"steady_s_per_epoch": 0.12, "speedup_vs_baseline": 9.0, "compile_s": 20.0, "baseline_s_per_epoch": 1.08,
             "compile_mode": "cuda-graph", "fallbacks": []}
    lenet = suite.Item("lenet5 vs course", 2, "bench", [], 1, 1, {"status": "ok", "wall_s": 30, "bench": bench})
    torch_bn = suite.Item("lenet_bn torch norm", 2, "bench", [], 1, 1,
                          {"status": "ok", "wall_s": 9, "bench": {**bench, "steady_s_per_epoch": 0.2}})
    scratch = suite.Item("lenet_bn scratch norm", 2, "bench", [], 1, 1,
                         {"status": "ok", "wall_s": 9, "bench": {**bench, "steady_s_per_epoch": 0.5}})
    verdicts = {target: (measured, verdict) for target, measured, verdict in suite.checks([lenet, torch_bn, scratch])}
    assert verdicts["lenet5 vs course: s/epoch <= 0.10"] == ("0.12", "FAIL")
    assert verdicts["lenet5 vs course: speed-up >= 30x"] == ("9", "FAIL")
    assert verdicts["lenet_bn torch norm: s/epoch <= 0.15"] == ("0.2", "FAIL")
    assert verdicts["scratch BN / torch BN <= 2x"] == ("2.50x", "FAIL")
    assert verdicts["alexnet-224 vs course: s/epoch <= 1.2"] == ("n/a", "-")


def test_a_cut_run_reports_its_finished_epochs(tmp_path):
    run = tmp_path / "best-fashion-mnist"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"epochs": 40, "runtime": {"fallbacks": []}}))
    # As a run writes it (the suite reads it through cnnzoo's checked reader): every column, three epochs.
    header = "epoch,train_loss,train_acc,val_acc,test_acc,lr,time_s,images_per_s,train_images,val_images,test_images"
    rows = [f"{epoch},0.5,0.8,,{acc},0.1,{time_s},2000.0,60000,,10000"
            for epoch, acc, time_s in ((1, 0.85, 30.0), (2, 0.88, 3.0), (3, 0.9, 3.0))]
    (run / "metrics.csv").write_text("\n".join([header, *rows]) + "\n")
    item = suite.Item("best-fashion-mnist", 3, "train", [], 1, 1,
                      {"status": "cut", "rc": "timeout", "wall_s": 70, "run": suite.read_run(run)})
    line = suite.summary_line(item)
    assert "3/40 epochs" in line and "test 90.00%" in line and "~147 s of training for all 40" in line


def test_profile_fit_profiles_the_last_epoch_on_the_cpu(data_root):
    spec = importlib.util.spec_from_file_location("profile_fit", _PATH.parent / "profile_fit.py")
    profile_fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile_fit)
    from cnnzoo.train import TrainConfig

    config = TrainConfig(model="lenet5", epochs=2, batch_size=128, optimizer="sgd", lr=0.05, limit_train=512,
                         limit_test=128, device="cpu", data_dir=str(data_root))
    report = profile_fit.profile_fit(config, rows=5)
    assert report.startswith("lenet5: last epoch") and "for 4 steps" in report
    assert "aten::" in report  # the operator table


def test_the_fast_recipe_runs_three_seeds_only_when_named_and_is_judged_on_their_mean(tmp_path, monkeypatch):
    fast = [item for item in suite.plan("cuda", quick=False) if item.name in suite.GROUPS["fast-fashion-mnist"]]
    assert [item.args[item.args.index("--seed") + 1] for item in fast] == ["0", "1", "2"]
    assert all(item.args[:2] == ["--recipe", "fast-fashion-mnist"] and item.stage == 4 for item in fast)
    ran = []

    def record(self, item):  # runs nothing: which items a command would run, in order
        ran.append(item.name)
        item.result = {"status": "skipped", "why": "not run by this test"}

    monkeypatch.setattr(suite.Suite, "run_item", record)
    suite.main(["--only", "fast-fashion-mnist,best-fashion-mnist", "--out", str(tmp_path), "--device", "cpu"])
    assert ran == ["best-fashion-mnist", *suite.GROUPS["fast-fashion-mnist"]]
    ran.clear()
    suite.main(["--out", str(tmp_path), "--device", "cpu"])
    assert ran and not set(suite.GROUPS["fast-fashion-mnist"]) & set(ran)  # not in the default 8-minute suite
    rows = {target: (measured, verdict) for target, measured, verdict in
            suite.fast_recipe_checks([0.951, 0.949, 0.953], [55.0, 58.0, 61.0])}
    assert rows["fast-fashion-mnist: mean of 3 seeds >= 95.0%"] == ("95.10 ± 0.20%", "PASS")
    assert rows["fast-fashion-mnist: wall <= 60 s each"] == ("max 61 s", "FAIL")
    assert all(verdict == "-" for _, _, verdict in suite.fast_recipe_checks([0.96, None, 0.95], [50.0, None, 50.0]))


def test_the_modern_cnn_chapter_recipes_have_their_gpu_command_ready():
    names = [item.name for item in suite.plan("cuda", quick=False)]
    chapter = [f"{model}-{form}" for model in ("nin", "googlenet", "densenet") for form in ("course", "fashion-mnist")]
    assert set(chapter) <= set(names) and set(chapter) <= set(list_recipes())
    assert all(names.index(name) < names.index("best-fashion-mnist") for name in chapter)
