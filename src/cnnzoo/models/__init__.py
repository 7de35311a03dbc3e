"""The model zoo: LeNet, AlexNet, VGG, ResNet and wide ResNet families, built by name.

Importing the architecture modules (below) is what registers their builders.
"""

from cnnzoo.models.alexnet import AlexNet
from cnnzoo.models.init import INITS, init_weights
from cnnzoo.models.lenet import LeNet
from cnnzoo.models.registry import (
    ModelSpec,
    build_model,
    get_model_spec,
    list_models,
    register_model,
)
from cnnzoo.models.resnet import ResidualBlock, ResNet18
from cnnzoo.models.summary import (
    LayerSummary,
    ModelRow,
    ModelSummary,
    count_mult_adds,
    count_parameters,
    models_table,
    summarize,
)
from cnnzoo.models.vgg import VGG, vgg_block
from cnnzoo.models.wrn import WideBasicBlock, WideResNet

__all__ = [
    "INITS",
    "VGG",
    "WideBasicBlock",
    "WideResNet",
    "AlexNet",
    "LayerSummary",
    "LeNet",
    "ModelRow",
    "ModelSpec",
    "ModelSummary",
    "ResNet18",
    "ResidualBlock",
    "build_model",
    "count_mult_adds",
    "count_parameters",
    "get_model_spec",
    "init_weights",
    "list_models",
    "models_table",
    "register_model",
    "summarize",
    "vgg_block",
]
