"""Transfer learning: a pretrained body (torchvision's ImageNet ResNet-18, or a cnnzoo run), a new
head trained alone for ``head_epochs``, then every layer at stage-wise rates (`param_groups`).
One schedule spans both phases; ``epochs`` counts both."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnzoo.data import InputSpec
from cnnzoo.errors import CnnzooError
from cnnzoo.train.checkpoint import Checkpoint, check_trained, load_checkpoint, load_model_state
from cnnzoo.train.config import FINETUNE_DEFAULTS, TrainConfig
from cnnzoo.train.runtime import Runtime
from cnnzoo.train.history import History
from cnnzoo.train.callbacks import Callback, FitState
from cnnzoo.train.loop import fit
from cnnzoo.workflows.run import finish_run, model_for, prepare_run, write_run_config
from cnnzoo.train.rundir import RunDir, default_run_name

TORCHVISION_SOURCES = {"torchvision:resnet18": "resnet18_tv"}
# torchvision:resnet18 becomes resnet18_tv, whose 1-channel stem sums the RGB filters: a grayscale
# image gives what the RGB network gives for it replicated to three channels. The summed stem weighs
# the channels equally, hence ImageNet's statistics plainly averaged; 224 is ImageNet's input size.
IMAGENET_GRAY_MEAN = (0.485 + 0.456 + 0.406) / 3
IMAGENET_GRAY_STD = (0.229 + 0.224 + 0.225) / 3
FIRST_STAGE_LR_SCALE = 0.1


def finetune_config(source: str, **overrides: Any) -> TrainConfig:
    """The TrainConfig of a fine-tuning run from `source` ("torchvision:resnet18", or a run directory or
    checkpoint: its architecture, input size and normalization, from its best checkpoint);
    `overrides` are TrainConfig fields."""
    if source in TORCHVISION_SOURCES:
        base = TrainConfig(model=TORCHVISION_SOURCES[source], input_size=224,
                           normalize_mean=IMAGENET_GRAY_MEAN, normalize_std=IMAGENET_GRAY_STD)
    elif source.startswith("torchvision:"):
        raise CnnzooError(f"Unknown pretrained model {source!r}; choose one of: {', '.join(TORCHVISION_SOURCES)}.")
    else:
        checkpoint = _source_checkpoint(source)
        src = checkpoint.train_config()
        normalize = InputSpec.from_config(src).normalize
        base = TrainConfig(model=src.model, model_options=src.model_options, norm=src.norm, init=src.init,
                           input_size=src.input_size, normalize=normalize is not None,
                           normalize_mean=normalize[0] if normalize else None,
                           normalize_std=normalize[1] if normalize else None)
        source = str(checkpoint.path.resolve())
    return base.replace(finetune_from=source, **{**FINETUNE_DEFAULTS, **overrides})


def _source_checkpoint(source: str) -> Checkpoint:
    path = Path(source)
    if path.is_dir():
        path = RunDir(path).checkpoint("best")
    checkpoint = load_checkpoint(path)
    check_trained(checkpoint)  # a run's untrained start is no pretrained model
    return checkpoint


def _weights_problem(error: Exception) -> str:
    import pickle

    if isinstance(error, pickle.UnpicklingError):
        return "it holds Python objects other than tensors, which cnnzoo will not unpickle"
    if isinstance(error, (EOFError, RuntimeError, OSError)) or "zip" in str(error).lower():
        return "it is not a complete torch.save file"
    return f"it is damaged ({type(error).__name__})"


def load_torchvision_weights(source: str, weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The source's state_dict from `weights` (a torch.save file, loaded with weights_only so a pickle
    that would run code is refused) or else torchvision's download (ResNet18_Weights.IMAGENET1K_V1)."""
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CnnzooError(f"Weights file {weights} does not exist.") from None
        except IsADirectoryError:
            raise CnnzooError(f"Weights file {weights} is a folder; give the torch.save file itself.") from None
        except Exception as error:  # unpickling garbage raises anything: KeyError, IndexError, struct.error...
            # torch's own text is not quoted: it advises weights_only=False, which must never be followed
            # for a file of unknown origin, and it carries terminal colour codes.
            raise CnnzooError(f"Cannot load {weights} as a state_dict of tensors ({_weights_problem(error)}); cnnzoo "
                              "loads only plain torch.save state_dicts and refuses pickles that would run code, so "
                              "save the weights with torch.save(model.state_dict(), PATH).") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CnnzooError(f"{weights} does not hold a state_dict (a dict of tensors); save one with "
                              "torch.save(model.state_dict(), PATH).")
        return state
    import torchvision

    try:
        return torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, weights_only=True)
    except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError; all mean: get the file another way
        raise CnnzooError(f"Cannot download torchvision's ImageNet weights for {source} ({type(error).__name__}); "
                          "pass --weights PATH to a state_dict saved with torch.save.") from None


def _source_state(config: TrainConfig, weights: str | Path | None) -> dict[str, torch.Tensor]:
    source = config.finetune_from
    if source not in TORCHVISION_SOURCES:
        return _source_checkpoint(source).model_state
    state = dict(load_torchvision_weights(source, weights))
    stem = state.get("conv1.weight")
    if stem is None or stem.ndim != 4:
        raise CnnzooError(f"{weights} is not a torchvision ResNet-18 state_dict (it has no 4-d conv1.weight).")
    # Summing the RGB filters makes a gray image x give what the RGB stem gives for (x, x, x).
    state["conv1.weight"] = stem.sum(1, keepdim=True)
    return state


def head_name(model: nn.Module) -> str:
    """The name of the model's last linear layer, which fine-tuning replaces."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise CnnzooError(f"{type(model).__name__} has no linear layer to use as a classification head.")
    return linear[-1]


def pretrained_model(config: TrainConfig, num_classes: int, weights: str | Path | None = None,
                     keep_head: bool = False) -> nn.Module:
    """`config.model` with the source's weights and, unless `keep_head`, a new head for `num_classes`
    (the last linear layer, freshly initialized)."""
    model = model_for(config, num_classes)  # its freshly initialized head is the new head
    state = _source_state(config, weights)
    head = head_name(model)
    if keep_head:
        source_classes = state[f"{head}.weight"].shape[0] if f"{head}.weight" in state else None
        if source_classes != num_classes:
            raise CnnzooError(f"--keep-head needs the source's class count ({source_classes}) to equal the "
                              f"data set's ({num_classes}); drop --keep-head to train a new head.")
    else:
        fresh = model.state_dict()
        state.update({k: fresh[k] for k in fresh if k.rpartition(".")[0] == head})
    load_model_state(model, state, source=f"{config.finetune_from} weights")
    return model


def _is_norm(module: nn.Module) -> bool:
    # Running statistics mark batch norm, torch's and cnnzoo.nn's alike.
    return isinstance(getattr(module, "running_mean", None), torch.Tensor)


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """One optimizer group per top-level stage (a norm layer joins the stage before it), with an
    `lr_scale` growing geometrically from FIRST_STAGE_LR_SCALE for the first to 1 for the last."""
    stages: list[list[nn.Parameter]] = []
    for child in model.children():
        params = list(child.parameters())
        if not params:
            continue
        if stages and _is_norm(child):
            stages[-1] += params
        else:
            stages.append(params)
    last = max(len(stages) - 1, 1)
    return [{"params": params, "lr_scale": FIRST_STAGE_LR_SCALE ** ((last - i) / last)}
            for i, params in enumerate(stages)]


@contextmanager
def head_only(model: nn.Module):
    """Freeze everything but the head while inside, with the frozen norm layers kept in eval mode.

    In train mode batch norm would normalize with each batch's statistics and overwrite its
    running statistics, so the "frozen" body would drift and the head would learn on features
    other than the ones it is evaluated on. fit() calls model.train() every epoch, hence the
    per-instance override of `train` rather than a single eval() call.
    """
    head = model.get_submodule(head_name(model))
    head_params = {id(p) for p in head.parameters()}
    head_modules = {id(m) for m in head.modules()}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in head_params]
    norms = [m for m in model.modules() if _is_norm(m) and id(m) not in head_modules]
    for p in frozen:
        p.requires_grad_(False)
    for m in norms:
        m.train = lambda mode=True, m=m: nn.Module.train(m, False)
        m.eval()
    try:
        yield model
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for m in norms:
            del m.train


class _StopAfterHead(Callback):
    def __init__(self, head_epochs: int):
        self.head_epochs = head_epochs

    def on_epoch_end(self, state: FitState) -> None:
        if state.epoch + 1 == self.head_epochs:
            state.stop_training, state.stop_reason = True, "head phase done"


def _train_phases(model: nn.Module, data, config: TrainConfig, run_dir: RunDir, runtime: Runtime, quiet: bool,
                  callbacks: Iterable[Callback], resume: Checkpoint | None = None) -> History:
    callbacks = list(callbacks)
    if (resume.meta["epoch"] if resume else 0) < config.head_epochs:
        with head_only(model):
            fit(model, data, config, run_dir=run_dir, resume=resume,
                callbacks=[*callbacks, _StopAfterHead(config.head_epochs)], quiet=quiet, runtime=runtime)
        # Continuing from the checkpoint makes an uninterrupted run and a resumed one the same.
        resume = load_checkpoint(run_dir.last_checkpoint)
        if resume.meta["epoch"] < config.head_epochs:  # early stopping ended the run within the head phase
            return History.from_dict(resume.meta["history"])
    if resume is not None and resume.meta["epoch"] == config.head_epochs:
        resume = dataclasses.replace(resume, optimizer_state=None)  # that optimizer knew only the head
        if config.head_epochs == config.epochs:
            return History.from_dict(resume.meta["history"])
    return fit(model, data, config, run_dir=run_dir, resume=resume, callbacks=callbacks, quiet=quiet,
               runtime=runtime, params=param_groups(model))


def finetune_run(
    config: TrainConfig,
    weights: str | Path | None = None,
    keep_head: bool = False,
    out: str | Path = "runs",
    name: str | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    callbacks: Iterable[Callback] = (),
) -> tuple[RunDir, History]:
    """Fine-tune as `cnnzoo finetune` does (config from `finetune_config`); returns the run directory and history."""
    config.validate()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Its two phases each build their own optimizer, which the data-parallel path does not do.
        raise CnnzooError("cnnzoo finetune runs in a single process; start it without torchrun or --nproc.")
    if not config.finetune_from:
        raise CnnzooError("A fine-tuning run needs finetune_from; build its config with finetune_config(source).")
    if weights is not None and config.finetune_from not in TORCHVISION_SOURCES:
        raise CnnzooError("--weights applies only to torchvision: sources; a run directory brings its own weights.")
    runtime, data, model = prepare_run(config,
                                       build_model=partial(pretrained_model, weights=weights, keep_head=keep_head))
    run_dir = RunDir.create(out, default_run_name(f"{config.model}-finetuned", config.dataset) if name is None
                            else name, overwrite=overwrite)
    weights_from = str(Path(weights).resolve()) if weights is not None else (
        "torchvision ResNet18_Weights.IMAGENET1K_V1" if config.finetune_from in TORCHVISION_SOURCES
        else config.finetune_from)
    with run_dir.writing():  # created locked: this process is the run's only writer until it is done
        write_run_config(run_dir, config, data, model, runtime, finetune={
            "weights": weights_from, "keep_head": keep_head, "head": head_name(model),
            "lr_scales": [g["lr_scale"] for g in param_groups(model)]})
        history = _train_phases(model, data, config, run_dir, runtime, quiet, callbacks)
        finish_run(run_dir, model, data, config, runtime, history)
    return run_dir, history


def resume_finetune(run_dir: RunDir, checkpoint: Checkpoint, config: TrainConfig, quiet: bool = False,
                    callbacks: Iterable[Callback] = ()) -> tuple[RunDir, History]:
    """Continue an interrupted fine-tuning run in whichever phase it stopped (used by resume_run)."""
    runtime, data, model = prepare_run(config)
    history = _train_phases(model, data, config, run_dir, runtime, quiet, callbacks, resume=checkpoint)
    finish_run(run_dir, model, data, config, runtime, history)
    return run_dir, history
