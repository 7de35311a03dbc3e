"""The notebook views of an evaluation: accuracy, per-class accuracy and the confusion matrix."""

import base64
import io

import numpy as np
from PIL import Image

from cnnzoo.viz.notebook import evaluation_bundle, evaluation_text

CLASSES = ["T-shirt/top", "Trouser", "Pullover"]
CONFUSION = [[8, 1, 1], [0, 10, 0], [3, 0, 7]]  # 25 of 30 right


def test_evaluation_text_gives_accuracy_per_class_and_the_matrix():
    lines = evaluation_text(25 / 30, 0.4321, CONFUSION, CLASSES).splitlines()
    assert lines[0] == "accuracy 83.33%  loss 0.4321  (30 images)"
    assert [line.split()[-1] for line in lines[3:6]] == ["80.0%", "100.0%", "70.0%"]
    assert lines[-3].split() == ["0", "8", "1", "1", "T-shirt/top"]
    assert lines[-1].split() == ["2", "3", "0", "7", "Pullover"]


def test_evaluation_text_names_the_split_it_measured():
    text = evaluation_text(25 / 30, 0.4321, CONFUSION, CLASSES, split="train")
    assert text == "train " + evaluation_text(25 / 30, 0.4321, CONFUSION, CLASSES)


def test_evaluation_html_has_cards_a_per_class_table_and_the_confusion_picture(assert_valid_html):
    bundle = evaluation_bundle(25 / 30, 0.4321, CONFUSION, CLASSES)
    page = bundle["text/html"]
    assert_valid_html(page)
    assert "83.33%" in page and "T-shirt/top" in page and "7 / 10" in page
    png = bundle["image/png"]
    assert base64.b64encode(png).decode() in page
    with Image.open(io.BytesIO(png)) as image:
        assert np.asarray(image.convert("L")).std() > 5
    assert bundle["text/plain"] == evaluation_text(25 / 30, 0.4321, CONFUSION, CLASSES)


def test_hostile_class_names_are_escaped(assert_valid_html):
    page = evaluation_bundle(1.0, 0.0, [[1, 0], [0, 1]], ["<b>x</b>", "a&b"])["text/html"]
    assert_valid_html(page)
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "a&amp;b" in page and "<b>x</b>" not in page


def test_an_evaluation_result_displays_with_its_split_class_names(test_split, assert_valid_html):
    import torch

    from cnnzoo.models import build_model
    from cnnzoo.train import evaluate

    torch.manual_seed(0)
    result = evaluate(build_model("lenet5"), test_split)
    bundle = result._repr_mimebundle_()
    assert_valid_html(bundle["text/html"])
    assert "Ankle boot" in bundle["text/html"] and result._repr_html_() == bundle["text/html"]
    assert str(result) == bundle["text/plain"]
    assert str(result).startswith(f"accuracy {result.accuracy * 100:.2f}%")
    assert result.confusion().sum() == len(test_split) and len(result.per_class_accuracy()) == 10
