"""The learning-rate range test: on real data it leaves the model, data and RNG untouched and
suggests a rate inside the sweep; on known curves it suggests the steepest descent."""

import math

import numpy as np
import pytest
import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.train.lr_finder import RULE_MIN_TENTH, RULE_STEEPEST, LRFinderResult, lr_find
from cnnzoo.workflows.run import data_for, model_for


@pytest.fixture
def sweep_config(quick_config):
    return quick_config.replace(model="lenet_bn", limit_train=512, batch_size=32)


def test_sweep_on_a_tiny_subset_suggests_a_finite_rate_and_touches_nothing(sweep_config):
    data = data_for(sweep_config, torch.device("cpu"))
    model = model_for(sweep_config, 10)  # lenet_bn: batch-norm running statistics would change too
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = data.train.images.clone(), data.train.labels.clone()
    rng = torch.get_rng_state()

    result = lr_find(model, data, sweep_config, start_lr=1e-5, end_lr=1.0, num_steps=40)

    assert math.isfinite(result.suggestion) and result.lrs[0] <= result.suggestion <= result.lrs[-1]
    assert result.min_loss_lr >= result.suggestion or result.rule == RULE_MIN_TENTH
    assert set(model.state_dict()) == set(weights)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert model.training  # the mode it came in with
    assert torch.equal(data.train.images, images) and torch.equal(data.train.labels, labels)
    assert torch.equal(torch.get_rng_state(), rng)
    # 40 steps over 5 decades (40 steps of 32 images: more than two passes over the 512)
    assert result.lrs[0] == pytest.approx(1e-5)
    ratios = np.diff(np.log(result.lrs))
    assert np.allclose(ratios, math.log(1e5) / 39)
    if not result.diverged:
        assert len(result.lrs) == 40 and result.lrs[-1] == pytest.approx(1.0)
    assert all(math.isfinite(v) for v in result.losses) and len(result.losses) == len(result.lrs)


def test_sweep_stops_early_once_the_loss_blows_up(sweep_config):
    config = sweep_config.replace(model="lenet5", optimizer="sgd", momentum=0.9)
    data = data_for(config, torch.device("cpu"))
    result = lr_find(model_for(config, 10), data, config, start_lr=1e-3, end_lr=1e6, num_steps=60)
    assert result.diverged and len(result.lrs) < 60
    assert result.lrs[-1] < 1e6 and result.lrs[0] <= result.suggestion <= result.lrs[-1]


def _curve(lrs, drop, centre, noise=0.0, seed=0):
    """A logistic fall by `drop`, steepest exactly at lr `centre`, then a blow-up 1.5 decades later."""
    x, c = np.log10(lrs), np.log10(centre)
    loss = 2.3 - drop / (1 + np.exp(-3 * (x - c))) + np.where(x > c + 1.5, 4 * (x - c - 1.5), 0)
    return loss + noise * np.random.default_rng(seed).standard_normal(len(lrs))


def test_suggestion_is_the_steepest_descent_of_the_smoothed_loss():
    lrs = np.geomspace(1e-7, 10, 200)
    result = LRFinderResult.from_losses(lrs, _curve(lrs, drop=1.2, centre=1e-3, noise=0.02))
    assert result.rule == RULE_STEEPEST
    assert 10 ** -3.3 < result.suggestion < 10 ** -2.7  # within 0.3 decades of the true steepest point
    assert result.min_loss_lr > result.suggestion
    assert result.loss_drop > 0.3


def test_a_flat_noisy_curve_falls_back_to_a_tenth_of_the_minimum():
    lrs = np.geomspace(1e-7, 10, 200)
    losses = 2.3 + 0.02 * np.random.default_rng(1).standard_normal(200)
    result = LRFinderResult.from_losses(lrs, losses)
    assert result.rule == RULE_MIN_TENTH
    assert result.suggestion == pytest.approx(max(result.min_loss_lr / 10, 1e-7))


def test_bad_sweeps_are_refused_in_one_sentence(sweep_config):
    data = data_for(sweep_config, torch.device("cpu"))
    model = model_for(sweep_config, 10)
    with pytest.raises(CnnzooError, match="--start-lr < --end-lr"):
        lr_find(model, data, sweep_config, start_lr=1.0, end_lr=0.1)
    with pytest.raises(CnnzooError, match="--steps must be"):
        lr_find(model, data, sweep_config, num_steps=5)
    with pytest.raises(CnnzooError, match="blew up after only 3 steps"):
        LRFinderResult.from_losses([1e-3, 1e-2, 1e-1], [2.3, 2.2, 50.0], num_steps=200)
