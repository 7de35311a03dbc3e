"""Recipes (`cnnzoo recipes`, `train --recipe`)."""

import json
from pathlib import Path

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.data import InputSpec, preprocess
from cnnzoo.errors import CnnzooError
from cnnzoo.models import get_model_spec
from cnnzoo.recipes import list_recipes, load_recipe, parse_recipe
from cnnzoo.workflows.run import data_for, model_for


@pytest.mark.parametrize("name", list_recipes())
def test_every_shipped_recipe_builds_its_model_and_data(name, data_root):
    config = load_recipe(name).config.replace(limit_train=64, limit_test=32, data_dir=str(data_root))
    data = data_for(config, torch.device("cpu"))
    held_out = len(data.val) if data.val is not None else 0  # lenet5-keras validates on the last 20%
    assert len(data.train) + held_out == 64 and len(data.test) == 32
    model = model_for(config, len(data.train.classes)).eval()
    h, w = InputSpec.from_config(config).input_size
    with torch.inference_mode():
        assert model(preprocess(data.test.images[:2], (h, w))).shape == (2, 10)


def test_recipes_command_lists_every_recipe(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_recipes())
    # A target nobody has reached must not read like a result, and a result must be in RESULTS.md.
    results = (Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md").read_text()
    for name in list_recipes():
        recipe = load_recipe(name)
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        shown = f"{100 * recipe.expected_accuracy:.2f}"
        assert (shown + "%" in line and shown in results) if recipe.measured else "target ≥" in line, line


def test_flags_override_the_recipe(tmp_path, data_root):
    code = main(["train", "--recipe", "lenet5-course", "--epochs", "1", "--limit-train", "256", "--limit-test", "128",
                 "--out", str(tmp_path), "--name", "r", "--device", "cpu", "--data-dir", str(data_root), "--quiet"])
    assert code == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (config["epochs"], config["lr"], config["recipe"]) == (1, 0.9, "lenet5-course")


def test_an_unknown_recipe_field_is_one_clear_error():
    with pytest.raises(CnnzooError, match=r"unknown \[train\] field\(s\) bogus") as caught:
        parse_recipe("bad", '[train]\nmodel = "lenet5"\nbogus = 1\n')
    assert "\n" not in str(caught.value)


def test_fast_path_false_turns_every_piece_off_and_the_default_leaves_them_auto():
    from cnnzoo.train.config import SWITCHES

    plain = parse_recipe("plain", 'fast_path = false\n[train]\nmodel = "lenet5"\n').config
    assert plain.precision == "fp32" and all(getattr(plain, name) == "off" for name in SWITCHES)
    fast = parse_recipe("fast", '[train]\nmodel = "lenet5"\n').config
    assert fast.precision == "auto" and all(getattr(fast, name) == "auto" for name in SWITCHES)


@pytest.mark.parametrize("text, message", [
    ('fast_path = "no"\n[train]\nmodel = "lenet5"\n', r"fast_path = 'no'; it must be true or false"),
    ('fast_path = false\n[train]\ncompile = "on"\n', r"fast_path = false and sets compile in \[train\] too"),
])
def test_a_bad_or_contradicted_fast_path_is_one_sentence(text, message):
    with pytest.raises(CnnzooError, match=message) as caught:
        parse_recipe("bad", text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("argv", [["train", "--recipe", "nope"], ["compare", "--recipes", "lenet5"]])
def test_an_unknown_recipe_name_is_one_line_and_exit_2(argv, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lenet5-course" in err
    assert not any(tmp_path.iterdir())


COURSE_RECIPES = ("lenet5-keras", "lenet5-course", "lenet_bn-course", "alexnet-course", "vgg11_small-course",
                  "resnet18-course", "nin-course", "googlenet-course", "densenet-course")


@pytest.mark.parametrize("name", COURSE_RECIPES)
def test_course_recipes_run_fp32_eager_on_every_device(name, fake_cuda_card):
    from cnnzoo.train.runtime import Runtime

    fake_cuda_card((9, 0), "NVIDIA H200")
    recipe = load_recipe(name)
    runtime = Runtime.from_config(recipe.config, torch.device("cuda"))  # what a GPU would run
    assert runtime.amp_dtype is None
    assert not (runtime.compile or runtime.channels_last or runtime.cuda_graphs or runtime.fused_optimizer
                or runtime.cudnn_benchmark)
    assert recipe.published  # where the material's number (or its absence) comes from
    assert recipe.config.train_acc == ("running" if name == "lenet5-keras" else "eval")
    # The course resizes PIL images (a no-op at LeNet's native 28 px, until --resize asks for one).
    assert recipe.config.resize_mode == ("tensor" if name == "lenet5-keras" else "pil")


@pytest.mark.parametrize("name, batch, size", [("nin-course", 128, 224), ("googlenet-course", 128, 96),
                                               ("densenet-course", 256, 96)])
def test_the_modern_cnn_course_recipes_are_the_books_settings(name, batch, size):
    config = load_recipe(name).config
    assert (config.optimizer, config.lr, config.momentum, config.epochs, config.batch_size) == ("sgd", 0.1, 0.0, 10,
                                                                                                  batch)
    assert (config.init, config.normalize) == ("xavier", False)
    assert get_model_spec(config.model).input_shape[1:] == (size, size) and config.input_size is None


def test_the_keras_recipe_is_the_materials_procedure():
    config = load_recipe("lenet5-keras").config
    assert (config.optimizer, config.lr, config.rho, config.eps, config.momentum) == ("rmsprop_keras", 1e-3, 0.9,
                                                                                      1e-7, 0.0)
    assert (config.batch_size, config.epochs, config.val_split, config.val_holdout) == (256, 20, 0.2, "last")
    assert (config.init, config.normalize, config.label_smoothing) == ("keras", False, 0.0)
    assert load_recipe("lenet5-keras").published_accuracy == 0.826


def test_recipes_command_shows_the_published_number_next_to_ours(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "published" in lines[0]
    keras = next(line for line in lines if line.startswith("lenet5-keras "))
    alexnet = next(line for line in lines if line.startswith("alexnet-course "))
    assert "82.60%" in keras and "89.66%" in alexnet
