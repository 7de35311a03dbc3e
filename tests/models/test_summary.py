import copy

import torch
from torch import nn

from cnnzoo.models import (
    build_model,
    count_mult_adds,
    count_parameters,
    get_model_spec,
    list_models,
    models_table,
    summarize,
)

LENET5_PARAMS = [156, 2_416, 48_120, 10_164, 850]


def test_lenet5_layers_keras_style():
    summary = summarize(build_model("lenet5"), (1, 28, 28))
    shapes = [
        layer.output_shape[1:]
        for layer in summary.layers
        if layer.kind in ("Conv2d", "AvgPool2d", "Flatten", "Linear")
    ]
    assert shapes == [
        (6, 28, 28),
        (6, 14, 14),
        (16, 10, 10),
        (16, 5, 5),
        (400,),
        (120,),
        (84,),
        (10,),
    ]
    assert [layer.params for layer in summary.layers if layer.params] == LENET5_PARAMS
    assert summary.layers[0].name == "features.0"
    assert summary.total_params == summary.trainable_params == 61_706
    assert summary.non_trainable_params == 0
    assert summary.param_size_mb == 61_706 * 4 / 1e6
    text = str(summary)
    assert "features.3 (Conv2d)" in text and "[1, 16, 10, 10]" in text
    assert "Total params: 61,706" in text and "Mult-adds: 423,038" in text


def test_lenet5_mult_adds_by_hand():
    # Each weight and bias is used once per output position: conv1 at 28x28, conv2 at 10x10,
    # every dense weight once.
    expected = 156 * 28 * 28 + 2_416 * 10 * 10 + 48_120 + 10_164 + 850
    assert count_mult_adds(build_model("lenet5"), (1, 28, 28)) == expected == 423_038
    assert summarize(build_model("lenet5"), (1, 28, 28), batch_size=4).mult_adds == 4 * expected


def test_summary_leaves_state_and_modes_untouched():
    model = build_model("lenet_bn")
    with torch.no_grad():  # give BN non-default statistics
        model(torch.randn(8, 1, 28, 28))
    model.classifier.eval()  # mixed modes must survive as they are
    before = copy.deepcopy(model.state_dict())
    modes = {name: m.training for name, m in model.named_modules()}

    summary = summarize(model, (1, 28, 28), batch_size=2)

    assert summary.total_params == 44_878
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert after[key].device == value.device
        assert torch.equal(after[key], value), key
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert model.features[1].num_batches_tracked.item() == 1


def test_frozen_parameters_are_non_trainable():
    model = build_model("lenet5")
    model.features[0].requires_grad_(False)
    summary = summarize(model, (1, 28, 28))
    assert summary.non_trainable_params == 156 == 61_706 - count_parameters(model, True)
    assert model.features[0].weight.requires_grad is False


def test_models_table_covers_every_model():
    rows = {row.name: row for row in models_table()}
    assert list(rows) == list_models()
    assert rows["vgg16"].params == 138_357_544
    assert rows["lenet5"].mult_adds == 423_038
    for name, row in rows.items():
        spec = get_model_spec(name)
        assert (row.input_shape, row.num_classes) == (spec.input_shape, spec.num_classes)
        assert row.mult_adds > row.params > 0


def test_summary_of_a_meta_model_works():
    with torch.device("meta"):
        model = build_model("resnet18")
    summary = summarize(model, (1, 96, 96))
    assert summary.layers[-1].output_shape == (1, 10)
    assert isinstance(model.fc, nn.Linear)


def test_training_needs_no_torchinfo():
    # Only summaries use torchinfo; a bare torch install (such as the GPU machines') must still train.
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'torchinfo': raise ImportError('torchinfo is blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import cnnzoo.cli, cnnzoo.train, cnnzoo.workflows.bench, cnnzoo.workflows.compare\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_buffers_are_shown_and_counted_as_keras_does():
    summary = summarize(build_model("lenet_bn"), (1, 28, 28), name="lenet_bn")
    assert (summary.total_params, summary.non_trainable_params, summary.buffers) == (44_878, 0, 452)
    assert (summary.keras_total, summary.keras_non_trainable) == (45_330, 452)  # Keras' model.summary()
    assert [layer.buffers for layer in summary.layers if layer.buffers] == [12, 32, 240, 168]
    text = str(summary)
    assert "Buffers #" in text and "Buffers (BN running statistics, not parameters): 452" in text
    assert "45,330 total, 452 non-trainable" in text
    assert "Buffers" not in str(summarize(build_model("lenet5"), (1, 28, 28)))  # nothing to show


def test_keras_alexnet_summary_matches_keras_counts():
    with torch.device("meta"):
        model = build_model("alexnet_bn_keras")
    summary = summarize(model, (3, 32, 32), name="alexnet_bn_keras")
    assert summary.keras_total == 25_730_506
    assert summary.keras_total - summary.keras_non_trainable == 25_709_350


def test_summary_is_titled_with_the_registered_name():
    assert str(summarize(build_model("lenet5_classic"), (1, 32, 32), name="lenet5_classic")).startswith(
        'Model: "lenet5_classic"')
    assert summarize(build_model("lenet5"), (1, 28, 28)).model == "LeNet"  # without a name: the class


def test_models_table_describes_every_model():
    rows = models_table()
    assert all(row.description == get_model_spec(row.name).description for row in rows)
    for name in ("alexnet_tv", "vgg11_tv", "vgg16_tv", "resnet18_tv"):
        assert "torchvision" in get_model_spec(name).description
    assert "Keras" in get_model_spec("alexnet_bn_keras").description
    assert "d2l" in get_model_spec("resnet18").description


def test_a_notebook_shows_the_summary_as_an_html_table_and_print_as_text(assert_valid_html):
    summary = summarize(build_model("lenet5"), (1, 28, 28))
    page = summary._repr_html_()
    assert_valid_html(page)
    assert page.count("<tr>") == 1 + len(summary.layers) + 1 + 5  # header, layers, totals header, five totals
    assert "61,706" in page and "features.0" in page and "[1, 6, 28, 28]" in page
    text = str(summary)
    assert "Total params: 61,706" in text and "<" not in text

    class Printer:  # IPython's pretty printer: its plain-text view is the table too
        def __init__(self):
            self.out = ""

        def text(self, value):
            self.out += value

    printer = Printer()
    summary._repr_pretty_(printer, cycle=False)
    assert printer.out == text
