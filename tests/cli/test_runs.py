"""`cnnzoo evaluate`, `predict`, `inspect` and `report` on a trained run end to end (cli/runs.py), and
every bad input answered with one line and exit status 2."""

import pytest
from PIL import Image

from cli_helpers import LONG_NAME, QUICK, assert_one_line_error, run_cli
from cnnzoo.cli import main


def test_evaluate_prints_accuracy_per_class_and_confusion(capsys, trained_run):
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--device", "cpu")
    assert code == 0
    assert out.startswith("test accuracy ") and "\nper-class accuracy\n" in out
    assert "Ankle boot" in out and "confusion matrix" in out
    assert (trained_run / "confusion-test.png").stat().st_size > 0


def test_predict_a_png_written_from_a_test_image(capsys, tmp_path, trained_run, data_root):
    from cnnzoo.data import load_split

    test = load_split("fashion-mnist", "test", root=data_root)
    png = tmp_path / "boot.png"
    Image.fromarray(test.images[0, 0].numpy()).save(png)  # test image 0 is an ankle boot
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    code, out, err = run_cli(capsys, "predict", trained_run, png, not_image, empty, "--device", "cpu",
                             "--top-k", "2")
    assert code == 2  # some inputs were bad
    assert out.startswith(f"{png}: ") and out.count("%") == 2
    errors = err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("cnnzoo: error: ") for e in errors)
    assert "notes.png" in errors[0] and "empty.png" in errors[1]


def test_evaluate_and_predict_refuse_bad_checkpoints(capsys, tmp_path):
    bogus = tmp_path / "model.safetensors"
    bogus.write_bytes(b"\x80\x04K\x01.")
    code, _, err = run_cli(capsys, "evaluate", bogus)
    assert_one_line_error(code, err, "pickle")
    code, _, err = run_cli(capsys, "predict", tmp_path, bogus)
    assert_one_line_error(code, err, "config.json")


def test_predict_refuses_a_zero_top_k(capsys, trained_run):
    code, _, err = run_cli(capsys, "predict", trained_run, "whatever.png", "--top-k", "0")
    assert_one_line_error(code, err, "--top-k")


def test_report_command_writes_its_page(capsys, tmp_path, trained_run):
    code, _, _ = run_cli(capsys, "report", trained_run, "-o", tmp_path / "report.html")
    assert code == 0 and "test-accuracy" in (tmp_path / "report.html").read_text()
    assert (trained_run / "report.html").is_file()  # every training run writes its report too
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert_one_line_error(code, err, "not a cnnzoo run directory")


def test_writing_onto_a_folder_is_one_clear_error(capsys, tmp_path, trained_run):
    (tmp_path / "folder").mkdir()
    code, _, err = run_cli(capsys, "report", trained_run, "-o", tmp_path / "folder")
    assert_one_line_error(code, err, "is a folder")


def test_evaluate_uses_tta_when_the_run_did(capsys, tmp_path, data_root):
    assert main(["train", "--model", "lenet_bn", "--out", str(tmp_path), "--name", "tta", "--tta", "--warmup-epochs",
                 "0", *QUICK, "--limit-train", "2048", "--batch-size", "32"]) == 0
    capsys.readouterr()

    def first_line(*flags):
        code, out, _ = run_cli(capsys, "evaluate", tmp_path / "tta", "--device", "cpu", *flags)
        assert code == 0
        return out.splitlines()[0]  # "test accuracy A%  loss L  (N images)"

    default = first_line()
    assert default == first_line("--tta") and default != first_line("--no-tta")


def test_a_run_whose_data_folder_is_gone_evaluates_from_cnnzoo_data(capsys, tmp_path, trained_run, monkeypatch,
                                                                    data_root):
    # A run moved to another machine names a data folder that does not exist there.
    import shutil

    from cnnzoo.train import load_checkpoint, save_checkpoint
    from cnnzoo.workflows.run import model_for

    run = tmp_path / "moved"
    shutil.copytree(trained_run, run)
    checkpoint = load_checkpoint(run)
    meta = {**checkpoint.meta, "config": {**checkpoint.config, "data_dir": str(tmp_path / "gone")}}
    model = model_for(checkpoint.train_config(), len(meta["classes"]))
    model.load_state_dict(checkpoint.model_state)
    save_checkpoint(run / "checkpoints" / "last.safetensors", model, meta)
    monkeypatch.setenv("CNNZOO_DATA", str(data_root))
    code, out, _ = run_cli(capsys, "evaluate", run, "--device", "cpu")
    assert code == 0 and "test accuracy" in out
    assert not (tmp_path / "gone").exists()


def test_inspect_writes_one_png_of_test_images_and_files(capsys, tmp_path, trained_lenet_run, data_root):
    from cnnzoo.data import load_split

    image = tmp_path / "shoe.png"
    Image.fromarray(255 - load_split("fashion-mnist", "test", root=data_root).images[0, 0].numpy()).save(image)
    output = tmp_path / "inside.png"
    code, out, err = run_cli(capsys, "inspect", trained_lenet_run, image, "--test-index", "0", "12",
                             "--layer", "features.2", "-o", output)
    assert code == 0, err
    assert out.splitlines()[0].startswith("shoe.png: ") and out.splitlines()[1].startswith("test #0: ")
    assert Image.open(output).size[1] > Image.open(output).size[0]  # overview, filters and maps stacked
    code, _, err = run_cli(capsys, "inspect", trained_lenet_run, "-o", tmp_path / "none.png")
    assert code == 2 and "name the images to inspect" in err


# ---------------------------------------------------------------- user input that once raised a traceback
@pytest.mark.parametrize("args, words", [
    (["evaluate", "{tmp}/" + LONG_NAME], ["Cannot use the path", "longer than"]),
])
def test_hostile_input_is_one_sentence_naming_the_flag_or_path(capsys, tmp_path, args, words):
    (tmp_path / "file").write_text("a file where a folder is expected")
    code, _, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_line_error(code, err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing half made
