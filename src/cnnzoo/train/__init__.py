"""Training: config, fit/evaluate/predict, checkpoints and run directories (whole runs: cnnzoo.workflows).

The names load on first use, so that importing one light module such as cnnzoo.train.config (which
the CLI's parser reads for its flags) does not import torch and the whole trainer with it.
"""

from importlib import import_module

_API = {
    "Callback": "callbacks", "FitState": "callbacks",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "TrainConfig": "config",
    "Runtime": "runtime", "resolve_device": "runtime",
    "EarlyStopping": "early_stopping",
    "History": "history",
    "EvalResult": "evaluation", "evaluate": "evaluation", "predict": "evaluation",
    "TrainingDiverged": "loop", "TrainingInterrupted": "loop", "fit": "loop",
    "MLflowLogger": "loggers", "TensorBoardLogger": "loggers",
    "LRFinderResult": "lr_finder", "lr_find": "lr_finder",
    "RunDir": "rundir",
    "TrainedModel": "trained", "load_trained": "trained",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f"cnnzoo.train.{_API[name]}"), name)
    raise AttributeError(f"module 'cnnzoo.train' has no attribute {name!r}")
