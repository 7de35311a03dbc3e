"""visualkeras pictures of the Keras twins, drawn on Keras 3 without patching visualkeras."""

import sys

import pytest
from PIL import Image

import cnnzoo.keras as ck
from cnnzoo.cli import main
from cnnzoo.errors import CnnzooError
from cnnzoo.viz import draw_model
from cnnzoo.viz.visualkeras import draw_visualkeras, keras2_output_shapes


def test_the_output_shapes_are_lent_for_the_drawing_only():
    twin = ck.build_model("lenet5")
    assert not hasattr(twin.layers[0], "output_shape")  # Keras 3: what visualkeras 0.2 trips over
    with keras2_output_shapes(twin):
        assert twin.get_layer("conv1").output_shape == (None, 28, 28, 6)
        assert twin.output_shape == (None, 10)
    assert not any(hasattr(layer, "output_shape") for layer in twin.layers)


@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_draw_model_writes_the_twins_picture(tmp_path, name):
    path = draw_model(name, tmp_path / f"{name}.png", style="visualkeras")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 50
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.png"]  # no temporary left


def test_visualkeras_is_png_only_and_says_so(tmp_path):
    with pytest.raises(CnnzooError, match="must end in .png, not m.svg"):
        draw_model("lenet5", tmp_path / "m.svg", style="visualkeras")
    assert not list(tmp_path.iterdir())


def test_a_missing_visualkeras_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "visualkeras", None)
    with pytest.raises(CnnzooError, match="visualkeras is not installed"):
        draw_visualkeras(ck.build_model("lenet5"), tmp_path / "m.png")


def test_cli_draw_visualkeras(tmp_path, capsys):
    out = tmp_path / "lenet.png"
    assert main(["draw", "lenet5", "--style", "visualkeras", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.is_file()
