import pytest
from conftest import TinyResidual, assert_sensible_png, skip_arrows

from cnnzoo.models import list_models
from cnnzoo.viz import draw_model, graph_figure


@pytest.mark.parametrize("name", list_models())
def test_graph_view_of_every_model(name, tmp_path):
    assert_sensible_png(draw_model(name, tmp_path / f"{name}.png", style="graph"))


def test_resnet_graph_shows_its_skip_connections():
    assert skip_arrows(graph_figure("resnet18")) >= 8  # one per residual block at least
    assert skip_arrows(graph_figure("vgg11_small")) == 0


def test_graph_of_a_stand_in_module():
    assert skip_arrows(graph_figure(TinyResidual().train(), input_shape=(1, 8, 8))) == 1
