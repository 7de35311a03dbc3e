"""cnnzoo.open_run(path): a run directory shown as its report card."""

import base64
import html
import io
import json

import pytest
from PIL import Image

import cnnzoo
from cnnzoo.errors import CnnzooError

from conftest import HOSTILE


def _images(page):
    parts = page.split('src="data:image/png;base64,')[1:]
    return [Image.open(io.BytesIO(base64.b64decode(p.split('"', 1)[0]))) for p in parts]


def test_a_finished_run_shows_accuracy_curves_per_class_and_confusion(run_dir, assert_valid_html):
    card = cnnzoo.open_run(run_dir)
    page = card._repr_html_()
    assert_valid_html(page)
    assert "lenet5 on fashion-mnist" in page and "91.23%" in page and "61,706" in page and "3 of 3" in page
    assert "Accuracy per class" in page and "Ankle boot" in page
    assert [image.size[0] > 400 for image in _images(page)] == [True, True]  # curves, confusion matrix
    assert card.test_accuracy == pytest.approx(0.91234)
    text = str(card)
    assert "test accuracy (990 images): 91.23%" in text and "confusion matrix" in text and "<" not in text.split("\n", 1)[1].replace(HOSTILE, "")  # no markup of its own


def test_a_run_still_training_says_it_has_not_finished(new_run, assert_valid_html):
    card = cnnzoo.open_run(new_run("unfinished", evaluation=False))
    page = card._repr_html_()
    assert_valid_html(page)
    assert "No evaluation.json yet" in page and len(_images(page)) == 1
    assert card.test_accuracy == pytest.approx(0.91234)  # the last epoch's, from metrics.csv


def test_values_from_the_run_are_escaped(run_dir):
    page = cnnzoo.open_run(run_dir)._repr_html_()  # the fixture's recipe name is HOSTILE
    assert HOSTILE not in page and "&lt;script&gt;document.title" in page


def test_a_damaged_config_or_evaluation_is_one_sentence_naming_the_file_and_the_field(run_dir):
    config = (run_dir / "config.json").read_text()
    (run_dir / "config.json").write_text(config.replace('"lenet5"', '"<script>x</script>"', 1))
    with pytest.raises(CnnzooError, match=r"config\.json .*setting no run can use .*Unknown model"):
        cnnzoo.open_run(run_dir)
    (run_dir / "config.json").write_text(config)
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    (run_dir / "evaluation.json").write_text(json.dumps({**evaluation, "accuracy": 7}))
    with pytest.raises(CnnzooError, match=r"evaluation\.json.*'accuracy'"):
        str(cnnzoo.open_run(run_dir))


def test_an_evaluation_without_a_loss_shows_as_text_and_html(run_dir):
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    (run_dir / "evaluation.json").write_text(json.dumps({**evaluation, "loss": None}))  # the schema allows it
    card = cnnzoo.open_run(run_dir)
    assert "loss nan" in str(card) and "Accuracy per class" in card._repr_html_()


def test_a_folder_that_is_no_run_is_one_clear_sentence(tmp_path):
    with pytest.raises(CnnzooError, match="not a cnnzoo run directory"):
        cnnzoo.open_run(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CnnzooError, match=r"config\.json is damaged: it is not valid JSON"):
        cnnzoo.open_run(tmp_path)


def test_report_writes_report_html(run_dir):
    path = cnnzoo.open_run(run_dir).report()
    assert path == run_dir / "report.html" and "<!doctype html>" in path.read_text()


def test_the_card_and_the_report_show_the_same_facts(run_dir):
    from cnnzoo.viz.report import render_report

    facts = cnnzoo.open_run(run_dir).facts()
    page = render_report(run_dir)
    assert [fact.name for fact in facts] == ["test-accuracy", "train-accuracy", "epochs", "training-time", "parameters",
                                             "recipe"]
    for fact in facts:
        assert f'<span class="k">{html.escape(fact.label)}</span><span class="v" id="{fact.name}"' in page
        assert f">{html.escape(fact.text)}</span>" in page


def test_the_test_accuracy_is_that_of_the_weights_the_run_ended_with(run_dir):
    # Early stopping may go back to a better epoch: evaluation.json then differs from the last row of metrics.csv.
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    (run_dir / "evaluation.json").write_text(json.dumps({**evaluation, "accuracy": 0.95}))
    from cnnzoo.viz.report import render_report

    assert cnnzoo.open_run(run_dir).test_accuracy == pytest.approx(0.95)
    assert 'id="test-accuracy" data-value="0.95">95.00%' in render_report(run_dir)
