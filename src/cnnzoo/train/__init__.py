"""Training: config, fit/evaluate/predict, checkpoints and run directories (whole runs: cnnzoo.workflows)."""

from cnnzoo.train.callbacks import Callback, FitState
from cnnzoo.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.device import Runtime, resolve_device
from cnnzoo.train.early_stopping import EarlyStopping
from cnnzoo.train.history import History
from cnnzoo.train.loop import (
    EvalResult,
    TrainingDiverged,
    TrainingInterrupted,
    evaluate,
    fit,
    predict,
)
from cnnzoo.train.loggers import MLflowLogger, TensorBoardLogger
from cnnzoo.train.lr_find import LRFinderResult, lr_find
from cnnzoo.train.rundir import RunDir

__all__ = [
    "Callback", "Checkpoint", "EarlyStopping", "EvalResult", "FitState", "History", "LRFinderResult", "MLflowLogger",
    "RunDir", "Runtime", "TensorBoardLogger", "TrainConfig", "TrainingDiverged", "TrainingInterrupted",
    "evaluate", "fit", "load_checkpoint", "lr_find", "predict", "resolve_device", "save_checkpoint",
]
