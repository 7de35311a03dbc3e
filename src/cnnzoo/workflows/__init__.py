"""What a command does, built on cnnzoo.train: a run end to end, resuming, fine-tuning, benchmarking,
comparing, exporting. Workflows may import train, data, models and viz; none of those imports a workflow."""

from cnnzoo.workflows.finetune import finetune_config, finetune_run
from cnnzoo.workflows.resume import resume_run
from cnnzoo.workflows.run import train_run
from cnnzoo.train.trained import TrainedModel, load_trained  # where the commands have always found it

__all__ = ["TrainedModel", "finetune_config", "finetune_run", "load_trained", "resume_run", "train_run"]
