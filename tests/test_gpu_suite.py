"""benchmarks/gpu_suite.py spends scarce GPU minutes: every command it would run must parse here first."""

import importlib.util
import sys
from pathlib import Path

import pytest

from cnnzoo.cli import build_parser
from cnnzoo.recipes import list_recipes

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"
_spec = importlib.util.spec_from_file_location("gpu_suite", _PATH)
suite = sys.modules["gpu_suite"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(suite)


def _items(quick: bool):
    return [*suite.smoke_items(quick), *suite.bench_items(quick),
            *suite.recipe_items(suite.RECIPES, [0, 1, 2], quick)]


@pytest.mark.parametrize("quick", [False, True])
def test_every_cnnzoo_command_of_the_suite_parses(tmp_path, quick):
    parser = build_parser()
    items = [item for item in _items(quick) if item.kind in ("train", "bench")]
    assert len(items) > 20
    for item in items:
        command = suite.command_for(item, "cuda", tmp_path)
        assert command[1:3] == ["-m", "cnnzoo"]
        parser.parse_args(command[3:])  # argparse exits (SystemExit) on an unknown flag or value


def test_the_suite_covers_every_gpu_recipe_and_names_items_uniquely_per_stage():
    # --only selects by name, and a stage's train items share one folder of run directories.
    assert set(suite.RECIPES) <= set(list_recipes())
    for stage in (suite.smoke_items(False), suite.bench_items(False), suite.recipe_items(suite.RECIPES, [0, 1], False)):
        names = [item.name for item in stage]
        assert len(set(map(suite.slug, names))) == len(names)


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
