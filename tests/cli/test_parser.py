"""The command line's flags: every TrainConfig switch reachable, choices and fallbacks from the config."""

import argparse
import re

import pytest

from cnnzoo.cli import build_parser, main
from cnnzoo.train import config as train_config


@pytest.mark.parametrize("command", ["train", "bench"])
def test_every_fast_path_switch_is_a_flag_that_reaches_the_config(command):
    from cnnzoo.cli import build_parser
    from cnnzoo.cli.commands import config_from_args
    from cnnzoo.train.config import SWITCHES

    flags = [arg for name in SWITCHES for arg in (f"--{name.replace('_', '-')}", "off")]
    args = build_parser().parse_args([command, *flags])
    assert all(getattr(args, name) == "off" for name in SWITCHES)
    if command == "train":
        config = config_from_args(args)
        assert all(getattr(config, name) == "off" for name in SWITCHES)


def _subcommand_options():
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return [(name, action) for name, parser in commands.choices.items() for action in parser._actions
            if action.option_strings and not isinstance(action, argparse._HelpAction)]


@pytest.mark.parametrize("command, action", _subcommand_options(),
                         ids=lambda value: value if isinstance(value, str) else value.option_strings[-1])
def test_every_flag_has_a_help_line_that_states_its_default(command, action):
    assert action.help, f"cnnzoo {command} {action.option_strings[-1]} has no help text"
    if not isinstance(action, argparse._StoreTrueAction):  # a switch is off unless given
        assert re.search(r"default|from the recipe|required", action.help), (command, action.help)


def test_train_help_ends_with_three_worked_examples(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    examples = capsys.readouterr().out.split("\nexamples:\n", 1)[1]
    commands = [line.strip() for line in examples.splitlines() if line.strip().startswith("cnnzoo train")]
    assert len(commands) == 3


def _action(command, flag):
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return next(a for a in commands.choices[command]._actions if flag in a.option_strings)


def _train_action(flag):
    return _action("train", flag)


@pytest.mark.parametrize("flag, values", [
    ("--optimizer", train_config.OPTIMIZERS), ("--schedule", train_config.SCHEDULES), ("--norm", train_config.NORMS),
    ("--init", train_config.INITS), ("--precision", train_config.PRECISIONS), ("--compile", train_config.AUTO_BOOL),
    ("--val-holdout", train_config.VAL_HOLDOUTS), ("--resize-mode", train_config.RESIZE_MODES),
    ("--train-acc", train_config.TRAIN_ACC),
])
def test_train_flag_choices_are_the_configs_value_lists(flag, values):
    assert tuple(_train_action(flag).choices) == tuple(values)


@pytest.mark.parametrize("flag, field", [("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--lr", "lr"),
                                         ("--schedule", "schedule"), ("--seed", "seed"),
                                         ("--random-erasing", "random_erasing")])
def test_the_fallback_a_help_line_names_is_the_configs_default(flag, field):
    value = getattr(train_config.TrainConfig(), field)
    assert f"else {value if isinstance(value, str) else format(value, 'g')})" in _train_action(flag).help


@pytest.mark.parametrize("field", sorted(train_config.FINETUNE_DEFAULTS))
def test_finetune_help_quotes_the_fine_tuning_default_that_finetune_config_applies(field):
    value = train_config.FINETUNE_DEFAULTS[field]
    action = _action("finetune", "--" + field.replace("_", "-"))
    assert f"(default: {value if isinstance(value, str) else format(value, 'g')})" in action.help
    # unset, the flag stays None, so finetune_config's own FINETUNE_DEFAULTS decide
    assert getattr(build_parser().parse_args(["finetune", "--from", "torchvision:resnet18"]), action.dest) is None


@pytest.mark.parametrize("flag, values", [("--optimizer", train_config.OPTIMIZERS),
                                          ("--schedule", train_config.SCHEDULES),
                                          ("--precision", train_config.PRECISIONS),
                                          ("--compile", train_config.AUTO_BOOL)])
def test_finetune_flag_choices_are_the_configs_value_lists(flag, values):
    assert tuple(_action("finetune", flag).choices) == tuple(values)


@pytest.mark.parametrize("flag, field", [("--seed", "seed"), ("--eval-batch-size", "eval_batch_size"),
                                         ("--warmup-epochs", "warmup_epochs"), ("--dataset", "dataset")])
def test_finetune_flags_not_set_by_fine_tuning_quote_train_configs_default(flag, field):
    value = getattr(train_config.TrainConfig(), field)
    assert f"(default: {value if isinstance(value, str) else format(value, 'g')})" in _action("finetune", flag).help


def test_random_erasing_flag_reaches_the_config():
    assert build_parser().parse_args(["train", "--random-erasing", "0.5"]).random_erasing == 0.5
    assert build_parser().parse_args(["train"]).random_erasing is None  # unset: the recipe's, else off


def test_every_field_in_a_train_section_is_a_train_flag_and_reaches_the_config_under_its_own_name():
    from cnnzoo.cli.parser import TRAIN_GROUPS

    for name, option in train_config.OPTIONS.items():
        if option.group in TRAIN_GROUPS:
            assert _train_action(option.flag_name(name)).dest == name
        else:  # the fine-tuning fields are finetune's flags
            assert _action("finetune", option.flag_name(name)).dest == name


def test_a_flag_left_unset_is_none_so_the_recipe_decides():
    args = build_parser().parse_args(["train"])
    assert all(getattr(args, name) is None for name in train_config.OPTIONS if hasattr(args, name))


def test_building_the_parser_imports_neither_matplotlib_nor_viz():
    # A fresh interpreter: this one has imported viz already through other tests.
    import subprocess
    import sys

    check = ("import sys; from cnnzoo.cli.parser import build_parser; build_parser(); "
             "print([m for m in sys.modules if m.startswith(('matplotlib', 'cnnzoo.viz'))])")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("command, flag, values", [("draw", "--style", "'layered', 'graph', 'visualkeras'"),
                                                   ("export", "--format", "'onnx', 'torchscript', 'keras'")])
def test_a_choice_loaded_on_use_is_checked_and_listed_in_the_help(capsys, command, flag, values):
    with pytest.raises(SystemExit):
        main([command, "x", flag, "bogus", "-o", "x.png"])
    assert f"argument {flag}: invalid choice: 'bogus' (choose from {values})" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([command, "--help"])
    # Named in words: a "%(choices)s" in the help would read the list when the parser is built (Python 3.14
    # checks every help text as it is added), loading what _ChoicesOf defers.
    shown = " ".join(capsys.readouterr().out.split())
    assert all(value.strip("'") in shown.split(flag, 2)[2] for value in values.split(", "))
