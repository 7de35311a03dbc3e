"""Training: config, fit/evaluate/predict, checkpoints and run directories."""

from cnnzoo.train.callbacks import Callback, FitState
from cnnzoo.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.device import Runtime, resolve_device
from cnnzoo.train.history import History
from cnnzoo.train.loop import (
    EvalResult,
    TrainingDiverged,
    TrainingInterrupted,
    evaluate,
    fit,
    predict,
)
from cnnzoo.train.run import TrainedModel, load_trained, resume_run, train_run
from cnnzoo.train.rundir import RunDir

__all__ = [
    "Callback", "Checkpoint", "EvalResult", "FitState", "History", "RunDir", "Runtime", "TrainConfig", "TrainedModel",
    "TrainingDiverged", "TrainingInterrupted", "evaluate", "fit", "load_checkpoint", "load_trained",
    "predict", "resolve_device", "resume_run", "save_checkpoint", "train_run",
]
