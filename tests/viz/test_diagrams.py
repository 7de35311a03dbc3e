import pytest
import torch
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Annotation
from PIL import Image
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models import list_models
from cnnzoo.viz import draw_model, graph_figure
from cnnzoo.viz.diagrams import SKIP_COLOR

def assert_sensible_png(path):
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        w, h = image.size
    assert 200 <= w <= 6000 and 200 <= h <= 6000, (path.name, w, h)


def skip_arrows(fig) -> int:
    ax = fig.axes[0]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    arrows += [t.arrow_patch for t in ax.texts if isinstance(t, Annotation) and t.arrow_patch is not None]
    return sum(1 for a in arrows if a.get_edgecolor()[:3] == pytest.approx(tuple(int(SKIP_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5))))


@pytest.mark.parametrize("name", list_models())
def test_graph_view_of_every_model(name, tmp_path):
    assert_sensible_png(draw_model(name, tmp_path / f"{name}.png", style="graph"))


@pytest.mark.parametrize("name", list_models())
def test_layered_view_of_every_model(name, tmp_path):
    assert_sensible_png(draw_model(name, tmp_path / f"{name}.png", style="layered"))


def layered_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_layered_resnet18_draws_residual_blocks_with_their_skips():
    from cnnzoo.viz import layered_figure

    fig = layered_figure("resnet18")
    texts = layered_texts(fig)
    blocks = [t for t in texts if t.startswith("layer")]
    assert blocks == ["layer1.0: conv 3×3 + 3×3", "layer1.1: conv 3×3 + 3×3", "layer2.0: conv 3×3 /2 + 3×3",
                      "layer2.1: conv 3×3 + 3×3", "layer3.0: conv 3×3 /2 + 3×3", "layer3.1: conv 3×3 + 3×3",
                      "layer4.0: conv 3×3 /2 + 3×3", "layer4.1: conv 3×3 + 3×3"]
    assert texts.count("identity") == 5 and texts.count("conv 1×1 /2") == 3  # the downsampling shortcuts
    assert skip_arrows(fig) == 8
    assert skip_arrows(layered_figure("vgg11_small")) == 0


def test_layered_googlenet_draws_each_inception_block_as_its_parallel_paths():
    from cnnzoo.viz import layered_figure

    texts = layered_texts(layered_figure("googlenet"))
    blocks = [t for t in texts if t.startswith("inception")]
    assert blocks == [f"inception{b}: 4 paths, concat" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert texts.count("1×1 → 5×5") == 9 and texts.count("pool 3×3 → 1×1") == 9 and texts.count("1×1") == 9
    # torchvision's form, with its 3x3 third path
    assert layered_texts(layered_figure("googlenet_tv")).count("1×1 → 3×3") == 18


def test_layered_densenet_draws_each_dense_layer_with_its_concatenation():
    from cnnzoo.viz import layered_figure

    fig = layered_figure("densenet")
    texts = layered_texts(fig)
    layers = [t for t in texts if ".denselayer" in t]
    assert len(layers) == 16 and layers[0] == "features.denseblock1.denselayer1: conv 3×3"
    assert texts.count("concat") == 16 and skip_arrows(fig) == 16


def test_svg_output(tmp_path):
    for style, name in (("graph", "resnet18"), ("layered", "lenet5")):
        text = draw_model(name, tmp_path / f"{name}.svg", style=style).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_resnet_graph_shows_its_skip_connections():
    assert skip_arrows(graph_figure("resnet18")) >= 8  # one per residual block at least
    assert skip_arrows(graph_figure("vgg11_small")) == 0


class TinyResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 3))

    def forward(self, x):
        x = self.bn(self.stem(x))
        return self.head(torch.relu(x + self.body(x)))


def test_stand_in_modules(tmp_path):
    chain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 2))
    assert_sensible_png(draw_model(chain, tmp_path / "chain.png", input_shape=(1, 8, 8)))

    model = TinyResidual().train()
    before = model.bn.running_mean.clone()
    fig = graph_figure(model, input_shape=(1, 8, 8))
    assert skip_arrows(fig) == 1
    assert model.training and model.bn.training, "drawing must leave the train/eval mode as it was"
    assert torch.equal(model.bn.running_mean, before), "drawing must not update batch-norm statistics"
    layered = draw_model(model, tmp_path / "tiny.png", style="layered", input_shape=(1, 8, 8))
    assert_sensible_png(layered)
    with pytest.raises(CnnzooError, match="nest or overlap.*--style graph"):
        draw_model(NestedResidual(), tmp_path / "nested.png", style="layered", input_shape=(1, 8, 8))
    assert not (tmp_path / "nested.png").exists()


class NestedResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.inner, self.outer = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return x + self.outer(x + self.inner(x))  # one skip inside another


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


@pytest.mark.parametrize("name,style,shape", [("lenet5", "layered", (1, 32, 32)), ("alexnet", "graph", (1, 96, 96)),
                                              ("resnet18", "graph", (3, 64, 64))])
def test_a_registered_model_is_drawn_as_built_for_the_given_input(tmp_path, capsys, name, style, shape):
    # The dense head's width follows the input, so the model must be built for the shape drawn.
    from cnnzoo.cli import main

    out = tmp_path / f"{name}.png"
    assert main(["draw", name, "--style", style, "--input", "x".join(map(str, shape)), "-o", str(out)]) == 0
    assert_sensible_png(out)
