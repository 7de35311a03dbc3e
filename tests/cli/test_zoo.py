"""`cnnzoo models`, `summary`, `draw`, `show` and `doctor` end to end (cli/zoo.py), and every bad input
answered with one line and exit status 2."""

import pytest
import torch

from cli_helpers import LONG_NAME, assert_one_line_error, run_cli


def test_models_lists_every_model_with_counts(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert "61,706" in out and "46,764,746" in out and "resnet18_tv" in out


def test_summary_is_a_keras_like_table(capsys):
    code, out, _ = run_cli(capsys, "summary", "lenet5")
    assert code == 0
    assert "61,706" in out and "Conv2d" in out and "[1, 6, 28, 28]" in out.replace("(", "[").replace(")", "]")


@pytest.mark.parametrize("args, words", [
    (["summary", "lenet6"], ["Unknown model", "lenet5"]),
    (["summary", "alexnet", "--input", "1x32x32"], ["at least 65x65"]),
    (["summary", "lenet5_classic", "--option", "activaton=relu"], ["activaton", "activation"]),
])
def test_summary_errors_are_one_sentence(capsys, args, words):
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, *words)


def test_a_reader_that_leaves_early_gets_no_traceback():
    # `cnnzoo summary resnet18 | head -1`: the pipe is closed before cnnzoo writes.
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "cnnzoo", "summary", "resnet18"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    child.stdout.close()
    _, err = child.communicate(timeout=120)
    assert "Traceback" not in err and child.returncode == 1, err


def test_draw_and_show_commands_write_files(capsys, tmp_path, data_root):
    from PIL import Image as PILImage

    code, out, _ = run_cli(capsys, "draw", "lenet5", "-o", tmp_path / "lenet5.svg")
    assert code == 0 and (tmp_path / "lenet5.svg").read_text().lstrip().startswith("<?xml")
    code, _, _ = run_cli(capsys, "show", "mnist", "--n", "12", "-o", tmp_path / "grid.png")
    assert code == 0 and min(PILImage.open(tmp_path / "grid.png").size) > 200
    code, _, _ = run_cli(capsys, "draw", "resnet18", "--style", "layered", "-o", tmp_path / "r.png")
    assert code == 0 and (tmp_path / "r.png").stat().st_size > 0


def test_show_draws_random_and_per_class_grids(capsys, tmp_path, data_root):
    from PIL import Image as PILImage

    code, out, _ = run_cli(capsys, "show", "fashion-mnist", "--per-class", "3", "--seed", "4", "-o", tmp_path / "c.png")
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'c.png'}"
    width, height = PILImage.open(tmp_path / "c.png").size
    assert height > 2 * width  # ten rows of three
    code, _, _ = run_cli(capsys, "show", "mnist", "--random", "--n", "8", "-o", tmp_path / "r.png")
    assert code == 0 and (tmp_path / "r.png").stat().st_size > 0
    code, _, err = run_cli(capsys, "show", "mnist", "--per-class", "0", "-o", tmp_path / "x.png")
    assert_one_line_error(code, err, "--per-class")


def test_doctor_says_what_auto_runs_on_each_device_and_why(capsys, data_root, monkeypatch, fake_cuda_card):
    fake_cuda_card((7, 5), "Tesla T4", ("sm_75", "sm_80"))
    code, out, _ = run_cli(capsys, "doctor", "--data-dir", data_root)  # with data: doctor exits 0
    assert code == 0
    assert ("device cuda:0: Tesla T4: precision fp16 (auto on Tesla T4 (compute capability 7.5): fp16 autocast with "
            "a gradient scaler, since its tensor cores run fp16 but not bf16); compile on") in out
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    code, out, _ = run_cli(capsys, "doctor", "--data-dir", data_root)
    assert "device mps: Apple GPU (MPS): precision fp32 (auto on MPS: fp32" in out
    assert "device: no CUDA GPU found; auto trains on mps" in out


def test_doctor_fails_when_no_data_set_is_usable(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "doctor", "--data-dir", tmp_path)
    assert code == 1 and "no data set is usable" in out


def test_cpu_out_of_memory_is_one_sentence(capsys, monkeypatch):
    import cnnzoo.cli.zoo as zoo

    def allocate(args):
        torch.empty(2**62, dtype=torch.uint8)  # what an absurd --batch-size or --resize meets

    monkeypatch.setattr(zoo, "cmd_models", allocate)
    code, _, err = run_cli(capsys, "models")
    assert_one_line_error(code, err, "ran out of memory", "--batch-size, --eval-batch-size, --resize or")


# ---------------------------------------------------------------- user input that once raised a traceback
@pytest.mark.parametrize("args, words", [
    (["show", "fashion-mnist", "--output", "{tmp}/" + LONG_NAME + "/x.png"], ["Cannot use the path", "longer than"]),
    (["show", "fashion-mnist", "--output", "{tmp}/file/x.png"], ["file is a file, not a folder"]),
    (["show", "fashion-mnist", "--seed", "-1"], ["--seed must be a whole number of at least 0"]),
    (["show", "fashion-mnist", "--n", "100000"], ["--n 100000", "at most 1000"]),
    (["show", "fashion-mnist", "--per-class", "6000"], ["--per-class 6000", "at most 100 of each class"]),
])
def test_hostile_input_is_one_sentence_naming_the_flag_or_path(capsys, tmp_path, data_root, args, words):
    (tmp_path / "file").write_text("a file where a folder is expected")
    code, _, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args], "--data-dir", data_root)
    assert_one_line_error(code, err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing half made
