"""Optimizers built from a config, their state on resume, Keras' RMSprop, and the LR schedules."""

import math

import pytest
import torch

from cnnzoo.train import TrainConfig
from cnnzoo.train.optim import LRSchedule, build_optimizer, load_optimizer_state


def test_constant_schedule_with_warmup_ramps_then_holds():
    schedule = LRSchedule("constant", 0.1, total_steps=100, warmup_steps=10)
    assert schedule(0) == pytest.approx(0.01)
    assert schedule(9) == pytest.approx(0.1)
    assert schedule(50) == pytest.approx(0.1)


def test_cosine_schedule_decays_to_zero():
    schedule = LRSchedule("cosine", 0.2, total_steps=100)
    values = [schedule(s) for s in range(101)]
    assert values[0] == pytest.approx(0.2)
    assert values[50] == pytest.approx(0.1)
    assert values[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_onecycle_matches_torch_onecycle_lr():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    total = 200
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, total_steps=total, pct_start=0.3,
                                                    anneal_strategy="cos", cycle_momentum=False)
    ours = LRSchedule("onecycle", 0.5, total_steps=total)
    for step in range(total - 1):
        assert ours(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-12), step
        optimizer.step()
        reference.step()


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop)])
def test_build_optimizer_honours_config(name, cls):
    model = torch.nn.Linear(3, 2)
    config = TrainConfig(optimizer=name, lr=0.05, weight_decay=1e-4, momentum=0.8, nesterov=True)
    optimizer = build_optimizer(model, config)
    assert isinstance(optimizer, cls)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 1e-4
    if name == "sgd":
        assert group["nesterov"] and group["momentum"] == 0.8
    assert not math.isnan(group["lr"])


def test_loaded_optimizer_state_keeps_this_runs_kernels_and_the_parameters_layout():
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    saved = build_optimizer(conv, TrainConfig(optimizer="adamw", lr=0.01), fused=True)
    conv(torch.randn(2, 3, 5, 5)).sum().backward()
    saved.step()
    state = saved.state_dict()
    # As a checkpoint stores it: plain contiguous tensors.
    state["state"] = {i: {k: v.contiguous() for k, v in s.items()} for i, s in state["state"].items()}
    resumed = build_optimizer(conv, TrainConfig(optimizer="adamw", lr=0.01), fused=False)
    load_optimizer_state(resumed, state)
    assert not resumed.param_groups[0]["fused"]
    for param, values in resumed.state.items():
        assert values["exp_avg"].stride() == param.stride()
        torch.testing.assert_close(values["exp_avg"], saved.state[param]["exp_avg"], rtol=0, atol=0)


def keras_rmsprop_reference(params, grads_per_step, lr, rho, eps, momentum=0.0):
    """Keras 3's RMSprop.update_step in float64: v = rho v + (1 - rho) g^2, p -= lr g / sqrt(v + eps)."""
    params = [p.double().clone() for p in params]
    velocity = [torch.zeros_like(p) for p in params]
    buffers = [torch.zeros_like(p) for p in params]
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            g = g.double()
            velocity[i] = rho * velocity[i] + (1 - rho) * g * g
            increment = lr * g / torch.sqrt(velocity[i] + eps)
            if momentum > 0:
                buffers[i] = momentum * buffers[i] + increment
                params[i] = params[i] - buffers[i]
            else:
                params[i] = params[i] - increment
    return params


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_keras_rmsprop_follows_keras_update_rule(momentum):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    start = [p.detach().clone() for p in model.parameters()]
    # Gradients as small as 1e-4 make eps matter: inside the root (Keras) or outside (torch).
    grads_per_step = [[torch.randn_like(p) * 10.0 ** -k for p in start] for k in (0, 2, 4, 1, 3)]
    config = TrainConfig(optimizer="rmsprop_keras", lr=1e-3, rho=0.9, eps=1e-7, momentum=momentum)
    optimizer = build_optimizer(model, config)
    for grads in grads_per_step:
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()
        optimizer.step()
    expected = keras_rmsprop_reference(start, grads_per_step, 1e-3, 0.9, 1e-7, momentum)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-15)
    # torch's RMSprop (eps outside the root) lands elsewhere on the same gradients.
    torch_model = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        for p, s in zip(torch_model.parameters(), start):
            p.copy_(s)
    torch_opt = torch.optim.RMSprop(torch_model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7, momentum=momentum)
    for grads in grads_per_step:
        for p, g in zip(torch_model.parameters(), grads):
            p.grad = g.clone()
        torch_opt.step()
    assert not torch.allclose(torch_model.weight, model.weight, rtol=1e-6, atol=0)


def test_rmsprop_defaults_are_the_libraries_and_momentum_is_not_sgds():
    model = torch.nn.Linear(3, 2)
    torch_group = build_optimizer(model, TrainConfig(optimizer="rmsprop", lr=0.01)).param_groups[0]
    assert (torch_group["alpha"], torch_group["eps"], torch_group["momentum"]) == (0.99, 1e-8, 0.0)
    keras_group = build_optimizer(model, TrainConfig(optimizer="rmsprop_keras", lr=0.01)).param_groups[0]
    assert (keras_group["rho"], keras_group["eps"], keras_group["momentum"]) == (0.9, 1e-7, 0.0)
    set_group = build_optimizer(model, TrainConfig(optimizer="rmsprop", lr=0.01, rho=0.9, eps=1e-7,
                                                   momentum=0.5)).param_groups[0]
    assert (set_group["alpha"], set_group["eps"], set_group["momentum"]) == (0.9, 1e-7, 0.5)
    assert build_optimizer(model, TrainConfig(optimizer="sgd")).param_groups[0]["momentum"] == 0.9

