"""`cnnzoo compare`: training recipes over seeds, rereading run directories, the leaderboard."""

from pathlib import Path

import pytest

from cnnzoo.cli import main


def test_compare_trains_then_rereads_runs(tmp_path, data_root, capsys):
    code = main(["compare", "--recipes", "lenet5-fashion-mnist,lenet_bn-fashion-mnist", "--seeds", "2", "--epochs",
                 "1", "--limit-train", "256", "--limit-test", "128", "--device", "cpu", "--data-dir", str(data_root),
                 "--out", str(tmp_path)])
    assert code == 0
    (folder,) = tmp_path.iterdir()
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "lenet5-fashion-mnist-s0", "lenet5-fashion-mnist-s1", "lenet_bn-fashion-mnist-s0", "lenet_bn-fashion-mnist-s1"]
    table = (folder / "leaderboard.md").read_text()
    assert "| lenet5-fashion-mnist | lenet5 | 61,706 |" in table and "±" in table
    assert (folder / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()

    again = tmp_path / "again"
    assert main(["compare", "--runs", str(folder), str(folder / "lenet5-fashion-mnist-s0"), "--out", str(again)]) == 0
    out = capsys.readouterr().out
    assert "| lenet_bn-fashion-mnist | lenet_bn | 44,878 |" in out
    (second,) = again.iterdir()
    assert (second / "leaderboard.md").is_file() and (second / "compare.png").is_file()
    assert "| 2 |" in out.split("lenet5-fashion-mnist | lenet5")[1].split("\n")[0]  # s0 listed twice, counted once


def _record(recipe, seed, acc, **setup):
    from cnnzoo.workflows.compare import RunRecord

    return RunRecord(path=Path(f"/runs/{recipe}-{seed}-{acc}"), recipe=recipe, model="lenet5", dataset="fashion-mnist",
                     seed=seed, params=61706, mult_adds=1, epochs=setup.get("epochs", 1), train_s=1.0,
                     images_per_s=1.0, test_acc=acc, test_curve=[acc], setup={"model": "lenet5", "lr": 0.1, **setup})


def test_leaderboard_rows_are_setups_not_recipe_names():
    from cnnzoo.workflows.compare import leaderboard

    rows = leaderboard([
        _record("lenet5-fashion-mnist", 0, 0.80), _record("lenet5-fashion-mnist", 1, 0.82),
        _record("lenet5-fashion-mnist", 0, 0.70, lr=0.5),  # flags changed the recipe: its own row, named so
        _record("lenet5-fashion-mnist", 0, 0.99),  # a second run of a counted seed is not another seed
    ])
    assert [(r.recipe, r.seeds) for r in rows] == [("lenet5-fashion-mnist (lr=0.1)", 2), ("lenet5-fashion-mnist (lr=0.5)", 1)]
    assert rows[0].acc_mean == pytest.approx(0.81)


@pytest.mark.parametrize("argv, words", [
    (["--recipes", " , "], "names no recipe"),
    (["--recipes", "lenet5-course", "--seeds", "0"], "--seeds"),
    (["--recipes", "lenet5-course", "--epochs", "-1"], "--epochs"),
    (["--recipes", "lenet5-course", "--device", "tpu"], "tpu"),
    (["--runs", "runs", "--epochs", "3"], "--epochs apply to training with --recipes"),
])
def test_compare_mistakes_are_one_line_and_leave_no_folder(argv, words, capsys, tmp_path):
    assert main(["compare", *argv, "--out", str(tmp_path / "out")]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_runs_mult_adds_are_those_of_the_model_it_built(tmp_path, quick_config):
    # compare once rebuilt the model without the run's class count (and init): a run with another
    # number of classes was ranked with the 10-class model's cost.
    from cnnzoo.models import build_model
    from cnnzoo.models.summary import count_mult_adds
    from cnnzoo.workflows import train_run
    from cnnzoo.workflows.compare import read_run

    run_dir, _ = train_run(quick_config.replace(epochs=1, init="xavier"), out=tmp_path, name="r", quiet=True)
    values = run_dir.read_json(run_dir.CONFIG)
    run_dir.write_json(run_dir.CONFIG, {**values, "classes": values["classes"][:3]})
    expected = count_mult_adds(build_model("lenet5", num_classes=3), (1, 28, 28))
    assert expected != count_mult_adds(build_model("lenet5"), (1, 28, 28))
    assert read_run(run_dir.path).mult_adds == expected
