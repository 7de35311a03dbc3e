"""TrainConfig: what validate refuses, the dict round trip, and the model a config builds."""

import re

import pytest
import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.train import TrainConfig


@pytest.mark.parametrize("change, word", [
    ({"epochs": 0}, "--epochs"), ({"epochs": -3}, "--epochs"), ({"batch_size": 0}, "--batch-size"),
    ({"lr": 0.0}, "--lr"), ({"lr": -1.0}, "--lr"), ({"lr": float("nan")}, "--lr"),
    ({"optimizer": "lbfgs"}, "optimizer"), ({"schedule": "step"}, "schedule"), ({"val_split": 1.0}, "--val-split"),
    ({"label_smoothing": 1.5}, "--label-smoothing"), ({"input_size": 0}, "--resize"),
    ({"random_erasing": 1.5}, "--random-erasing"), ({"random_erasing": -0.1}, "--random-erasing"),
])
def test_validate_rejects_values_no_run_could_use(change, word):
    with pytest.raises(CnnzooError, match=word):
        TrainConfig(**change).validate()


def test_config_round_trips_through_dict_and_rejects_unknown_fields():
    config = TrainConfig(model="alexnet", lr=0.02, model_options={"dropout": 0.3})
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(CnnzooError, match="Unknown config field"):
        TrainConfig.from_dict({"modle": "lenet5"})


@pytest.mark.parametrize("change, word", [
    ({"optimizer": "sgd", "rho": 0.9}, "--rho applies to RMSprop only"),
    ({"optimizer": "rmsprop", "rho": 1.0}, "--rho must be in"),
    ({"optimizer": "sgd", "eps": 1e-7}, "--eps has no effect on SGD"),
    ({"optimizer": "adam", "eps": 0.0}, "--eps must be a positive number"),
    ({"val_holdout": "first"}, "--val-holdout must be one of random, last"),
    ({"resize_mode": "cv2"}, "--resize-mode must be one of tensor, pil"),
    ({"train_acc": "both"}, "--train-acc must be one of running, eval"),
])
def test_validate_rejects_course_settings_no_run_could_use(change, word):
    with pytest.raises(CnnzooError, match=word):
        TrainConfig(**change).validate()


@pytest.mark.parametrize("change, message", [
    ({"lr": 1e300}, "--lr must be a positive number of at most 3.4e+38"),
    ({"input_size": 100_000}, "--resize must be a positive image size of at most 1024"),
    ({"seed": 2**70}, r"--seed must be a whole number in \[0, 2\*\*63\)"),
    ({"epochs": 2**70}, r"--epochs must be a positive whole number below 2\*\*31"),
])
def test_values_no_float32_run_or_memory_could_hold_are_refused_up_front(change, message):
    with pytest.raises(CnnzooError, match=message.replace("+", r"\+")):
        TrainConfig(**change).validate()


def test_model_from_config_builds_the_configs_model_for_the_class_count():
    import cnnzoo.nn
    from cnnzoo.train.config import model_from_config

    config = TrainConfig(model="lenet_bn", norm="scratch", init="xavier", input_size=32)
    model = model_from_config(config, 3)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 3)
    assert any(isinstance(m, cnnzoo.nn.BatchNorm2d) for m in model.modules())  # norm="scratch" reached it


# ---------------------------------------------------------------- the fields' Options
from cnnzoo.train import config as train_config  # noqa: E402

NOT_FLAGS = {"model_options", "normalize_mean", "normalize_std", "finetune_from"}  # --option; set by fine-tuning; --from


def test_every_field_but_the_few_set_otherwise_carries_an_option():
    assert set(TrainConfig.field_names()) - set(train_config.OPTIONS) == NOT_FLAGS


@pytest.mark.parametrize("name", [n for n, o in train_config.OPTIONS.items() if o.choices])
def test_a_value_outside_a_fields_choices_is_refused_naming_its_flag(name):
    flag = train_config.OPTIONS[name].flag_name(name)
    with pytest.raises(CnnzooError, match=f"^{flag} must be one of "):
        TrainConfig(**{name: "no-such-value"}).validate()


@pytest.mark.parametrize("name", [n for n, o in train_config.OPTIONS.items() if o.rule])
@pytest.mark.parametrize("bad", [-1, "7", True, float("nan")])
def test_a_value_breaking_a_fields_rule_is_refused_with_the_rule_in_words(name, bad):
    option = train_config.OPTIONS[name]
    with pytest.raises(CnnzooError, match=re.escape(f"{option.flag_name(name)} must be {option.must}, got {bad!r}.")):
        TrainConfig(**{name: bad}).validate()


@pytest.mark.parametrize("name", [n for n, d in train_config.FIELD_DEFAULTS.items() if isinstance(d, bool)])
def test_a_switch_given_a_non_boolean_is_refused(name):
    with pytest.raises(CnnzooError, match="must be true or false"):
        TrainConfig(**{name: "yes"}).validate()


def test_the_fast_path_table_names_real_fields_and_the_fallback_order_ends_with_the_safest():
    import dataclasses

    from cnnzoo.train.runtime import Runtime

    runtime_fields = {f.name for f in dataclasses.fields(Runtime)}
    for piece in train_config.FAST_PATH:
        assert piece.name in TrainConfig.field_names()
        assert set(piece.off) <= runtime_fields, piece
    assert set(train_config.SWITCHES) <= runtime_fields
    assert [p.name for p in train_config.FAST_PATH][:2] == ["cuda_graphs", "compile"]  # the riskiest go first


def test_execution_fields_are_how_a_run_ran_not_what_it_learned():
    assert {"seed", "device", "precision", *train_config.SWITCHES, "data_dir"} <= set(train_config.EXECUTION_FIELDS)
    assert not {"lr", "epochs", "model", "optimizer", "batch_size"} & set(train_config.EXECUTION_FIELDS)
