import csv
import json
import re
from pathlib import Path

import pytest

from cnnzoo.atomic import DiskFull
from cnnzoo.errors import CnnzooError
from cnnzoo.viz import plot_run, write_report


def open_report(browser, path: Path, viewport: dict):
    """The page plus every console error, page error and non-local request it made."""
    page = browser.new_page(viewport=viewport)
    problems = []
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("request", lambda req: req.url.startswith(("file:", "data:")) or problems.append(f"request: {req.url}"))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, problems


def last_test_acc(run_dir: Path) -> str:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))[-1]["test_acc"]


def test_report_in_a_real_browser(browser, run_dir, tmp_path):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    text = path.read_text()
    hostile = json.loads((run_dir / "config.json").read_text())["recipe"]
    assert "<script>" in hostile
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(|@import""", text), "the report must be self-contained"
    assert hostile not in text and "&lt;script&gt;" in text

    page, problems = open_report(browser, path, {"width": 1366, "height": 900})
    assert page.title().startswith("lenet5 on fashion-mnist")
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.alt, i.complete, i.naturalWidth])")
    assert [alt for alt, _, _ in images] == ["Training loss per batch", "Accuracy per epoch", "Learning rate",
                                             "confusion matrix", "misclassified examples"]
    assert all(complete and width > 0 for _, complete, width in images), images
    expected = last_test_acc(run_dir)
    shown = page.locator("#test-accuracy")
    assert shown.get_attribute("data-value") == expected
    assert shown.inner_text() == f"{float(expected) * 100:.2f}%"
    assert "61,706" in page.inner_text("pre"), "the model summary should show LeNet-5's parameter count"
    assert page.evaluate("document.title").find("pwned") < 0
    page.screenshot(path=tmp_path / "report-desktop.png", full_page=True)

    phone, phone_problems = open_report(browser, path, {"width": 390, "height": 844})
    overflow = phone.evaluate(
        "[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[2] and overflow[1] <= overflow[2], f"horizontal overflow on a phone: {overflow}"
    phone.screenshot(path=tmp_path / "report-phone.png", full_page=True)
    assert (tmp_path / "report-phone.png").stat().st_size > 0
    assert problems == [] and phone_problems == []


def test_report_of_a_running_run(browser, new_run, tmp_path):
    run = new_run("running", evaluation=False)
    path = write_report(run, tmp_path / "elsewhere" / "r.html")
    page, problems = open_report(browser, path, {"width": 1024, "height": 768})
    body = page.inner_text("body")
    assert "No evaluation.json yet" in body
    assert page.eval_on_selector_all("img", "imgs => imgs.every(i => i.naturalWidth > 0) && imgs.length") == 3
    assert page.locator("#test-accuracy").get_attribute("data-value") == last_test_acc(run)
    assert problems == []


def test_report_of_an_unknown_model_names_the_field_of_config_json(new_run, tmp_path):
    run = new_run("unknown", evaluation=False, model="no_such_model")
    with pytest.raises(CnnzooError, match=r"config\.json holds a setting no run can use \(Unknown model 'no_such_model'"):
        write_report(run, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_a_full_disk_while_writing_the_report_says_the_checkpoints_are_intact(run_dir, tmp_path, monkeypatch,
                                                                                no_space):
    plot_run(run_dir)
    (run_dir / "checkpoints").mkdir()
    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(DiskFull) as caught:
        write_report(run_dir)
    assert "; report.html was not written, and the last checkpoint in checkpoints/ is intact: " in str(caught.value)
    with pytest.raises(DiskFull) as caught:
        write_report(run_dir, tmp_path / "elsewhere.html")  # outside the run, no promise about it
    assert "; elsewhere.html was not written: " in str(caught.value)


def test_report_redraws_figures_that_are_missing(run_dir):
    write_report(run_dir)
    (run_dir / "confusion.png").unlink()
    write_report(run_dir)
    assert (run_dir / "confusion.png").is_file()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"


def _report_text(run_dir: Path) -> str:
    from cnnzoo.viz.report import render_report

    return render_report(run_dir)


def test_report_labels_accuracies_with_their_image_counts_and_rounds_losses(run_dir):
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    evaluation.update(loss=0.3523413818359375, train_images=60_000)
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    text = _report_text(run_dir)
    assert "test accuracy (990 images)" in text  # the synthetic confusion matrix sums to 990
    assert "accuracy <strong>91.23%</strong> on 990 images, loss 0.3523</p>" in text
    assert "0.3523413818359375" not in text
    assert "train_acc on 60,000 train images; test_acc on 990 test images" in text
    assert "train accuracy, running (60,000 images)" in text
    evaluation["images"] = 2000  # evaluation.json's own count wins over the confusion matrix's sum
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    assert "test accuracy (2,000 images)" in _report_text(run_dir)


def test_report_hides_a_column_no_epoch_filled(run_dir):
    text = _report_text(run_dir)
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", text).group(1)
    assert "val_acc" not in head and "test_acc" in head and "train_loss" in head


def test_report_config_is_grouped_without_nulls_or_unused_settings(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    config.update(optimizer="adamw", momentum=0.9, grad_clip=None, limit_train=None, model_options={},
                  hflip=False, my_new_field=7)
    (run_dir / "config.json").write_text(json.dumps(config))
    text = _report_text(run_dir)
    section = text.split("<h2>Configuration</h2>", 1)[1]
    groups = re.findall(r"<h3>(.*?)</h3>", section)
    assert groups[:3] == ["what to train", "optimization", "data"] and groups[-1] == "other"
    assert groups == list(dict.fromkeys(groups))  # each section once
    keys = re.findall(r"<tr><td>(.*?)</td>", section)
    assert "momentum" not in keys  # AdamW has no momentum setting
    assert not {"grad_clip", "limit_train", "model_options", "classes"} & set(keys)
    assert {"my_new_field", "hflip", "lr", "input_shape"} <= set(keys)
    assert "<td>null</td>" not in section and "<td>1×28×28</td>" in section and "<td>off</td>" in section
