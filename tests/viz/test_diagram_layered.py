import pytest
from conftest import TinyResidual, assert_sensible_png, skip_arrows
from torch import nn

from cnnzoo.errors import CnnzooError
from cnnzoo.models import list_models
from cnnzoo.viz import draw_model, layered_figure


@pytest.mark.parametrize("name", list_models())
def test_layered_view_of_every_model(name, tmp_path):
    assert_sensible_png(draw_model(name, tmp_path / f"{name}.png", style="layered"))


def layered_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_layered_resnet18_draws_residual_blocks_with_their_skips():
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
    texts = layered_texts(layered_figure("googlenet"))
    blocks = [t for t in texts if t.startswith("inception")]
    assert blocks == [f"inception{b}: 4 paths, concat" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert texts.count("1×1 → 5×5") == 9 and texts.count("pool 3×3 → 1×1") == 9 and texts.count("1×1") == 9
    # torchvision's form, with its 3x3 third path
    assert layered_texts(layered_figure("googlenet_tv")).count("1×1 → 3×3") == 18


def test_layered_densenet_draws_each_dense_layer_with_its_concatenation():
    fig = layered_figure("densenet")
    texts = layered_texts(fig)
    layers = [t for t in texts if ".denselayer" in t]
    assert len(layers) == 16 and layers[0] == "features.denseblock1.denselayer1: conv 3×3"
    assert texts.count("concat") == 16 and skip_arrows(fig) == 16


class NestedResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.inner, self.outer = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return x + self.outer(x + self.inner(x))  # one skip inside another


def test_stand_in_modules(tmp_path):
    chain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 2))
    assert_sensible_png(draw_model(chain, tmp_path / "chain.png", input_shape=(1, 8, 8)))
    layered = draw_model(TinyResidual().train(), tmp_path / "tiny.png", style="layered", input_shape=(1, 8, 8))
    assert_sensible_png(layered)
    with pytest.raises(CnnzooError, match="nest or overlap.*--style graph"):
        draw_model(NestedResidual(), tmp_path / "nested.png", style="layered", input_shape=(1, 8, 8))
    assert not (tmp_path / "nested.png").exists()
