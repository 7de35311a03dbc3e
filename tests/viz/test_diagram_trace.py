import pytest
import torch
from conftest import TinyResidual, assert_sensible_png

from cnnzoo.viz.diagram_trace import trace


def test_tracing_leaves_the_model_as_it_was():
    model = TinyResidual().train()
    before = model.bn.running_mean.clone()
    nodes = trace(model, (1, 8, 8), "TinyResidual")
    assert [n.category for n in nodes] == ["input", "conv", "norm", "conv", "activation", "merge", "activation",
                                           "reshape", "dense"]
    assert nodes[5].inputs == [2, 4] and nodes[-1].shape == (3,)  # the skip joins at the add; batch dim dropped
    assert model.training and model.bn.training, "drawing must leave the train/eval mode as it was"
    assert torch.equal(model.bn.running_mean, before), "drawing must not update batch-norm statistics"


@pytest.mark.parametrize("name,style,shape", [("lenet5", "layered", (1, 32, 32)), ("alexnet", "graph", (1, 96, 96)),
                                              ("resnet18", "graph", (3, 64, 64))])
def test_a_registered_model_is_drawn_as_built_for_the_given_input(tmp_path, capsys, name, style, shape):
    # The dense head's width follows the input, so the model must be built for the shape drawn.
    from cnnzoo.cli import main

    out = tmp_path / f"{name}.png"
    assert main(["draw", name, "--style", style, "--input", "x".join(map(str, shape)), "-o", str(out)]) == 0
    assert_sensible_png(out)
