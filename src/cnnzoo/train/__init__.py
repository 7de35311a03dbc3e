"""Training: config, fit/evaluate/predict, checkpoints and run directories."""

from cnnzoo.train.callbacks import Callback, FitState
from cnnzoo.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.runtime import Runtime, resolve_device
from cnnzoo.train.early_stopping import EarlyStopping
from cnnzoo.train.history import History
from cnnzoo.train.evaluate import EvalResult, evaluate, predict
from cnnzoo.train.loop import TrainingDiverged, TrainingInterrupted, fit
from cnnzoo.train.loggers import MLflowLogger, TensorBoardLogger
from cnnzoo.train.lr_find import LRFinderResult, lr_find
from cnnzoo.train.run import TrainedModel, load_trained, resume_run, train_run
from cnnzoo.train.rundir import RunDir

__all__ = [
    "Callback", "Checkpoint", "EarlyStopping", "EvalResult", "FitState", "History", "LRFinderResult", "MLflowLogger",
    "RunDir", "Runtime", "TensorBoardLogger", "TrainConfig", "TrainedModel", "TrainingDiverged", "TrainingInterrupted",
    "evaluate", "fit", "load_checkpoint", "load_trained", "lr_find", "predict", "resolve_device", "resume_run",
    "save_checkpoint", "train_run",
]
