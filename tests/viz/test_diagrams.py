import pytest
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.viz import draw_model


def test_svg_output(tmp_path):
    for style, name in (("graph", "resnet18"), ("layered", "lenet5")):
        text = draw_model(name, tmp_path / f"{name}.svg", style=style).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_user_errors(tmp_path):
    with pytest.raises(CnnzooError, match="input_shape"):
        draw_model(nn.Linear(2, 2), tmp_path / "x.png")
    with pytest.raises(CnnzooError, match="style"):
        draw_model("lenet5", tmp_path / "x.png", style="sideways")
    with pytest.raises(CnnzooError, match=r"\.svg"):
        draw_model("lenet5", tmp_path / "x.gif")
    with pytest.raises(CnnzooError, match="Unknown model"):
        draw_model("lenet6", tmp_path / "x.png")
    with pytest.raises(CnnzooError, match="input of shape"):
        draw_model(nn.Sequential(nn.Conv2d(1, 2, 5), nn.Flatten(), nn.Linear(8, 2)), tmp_path / "x.png", input_shape=(1, 3, 3))
