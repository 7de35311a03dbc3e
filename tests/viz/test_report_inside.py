"""The report's "Inside the network" section, on a real trained run and on runs missing its inputs."""

import json
import re
import shutil

import pytest

from cnnzoo.train import Callback
from cnnzoo.train.rundir import RunDir
from cnnzoo.viz import write_report
from cnnzoo.viz.report_inside import inside_section, report_images
from cnnzoo.workflows import train_run


def test_report_images_are_right_ones_first_then_the_listed_mistakes():
    labels = [0, 1, 2, 3, 4, 5]
    evaluation = {"misclassified": [{"index": 4}, {"index": 2}, {"index": 5}]}
    # the model gets image 0 wrong too (unlisted): it is skipped, not shown as "right"
    assert report_images(evaluation, labels, lambda idx: [9 if i == 0 else labels[i] for i in idx]) == [1, 3, 4, 2]
    assert report_images(None, labels, lambda idx: [labels[i] for i in idx]) == [0, 1]


def test_the_report_of_a_trained_run_shows_filters_maps_and_grad_cam(trained_lenet_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_lenet_run, run)
    before = sorted(p.name for p in run.rglob("*"))
    text = write_report(run).read_text(encoding="utf-8")
    section = re.search(r'<section id="inside">.*?</section>', text, re.S).group(0)
    mistakes = [m["index"] for m in json.loads((run / "evaluation.json").read_text())["misclassified"][:2]]
    assert all(f"#{i}" in section for i in mistakes)
    assert section.count("<img") == 1 and "Grad-CAM at <code>features.5</code>" in section
    assert len(re.search(r'base64,([^"]+)', section).group(1)) > 20_000  # a real picture, not a stub
    assert sorted(p.name for p in run.rglob("*")) == before  # only report.html changed, no new files


def test_without_a_checkpoint_the_section_says_why(trained_lenet_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_lenet_run, run)
    shutil.rmtree(run / "checkpoints")
    assert "Not drawn: the run has no checkpoint yet" in inside_section(RunDir(run), None)


def test_weights_evaluate_and_predict_refuse_are_not_drawn(trained_lenet_run, tmp_path, quick_config):
    run = tmp_path / "run"
    shutil.copytree(trained_lenet_run, run)
    values = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**values, "dataset": "mnist"}))
    section = inside_section(RunDir(run), None)
    assert "Not drawn: " in section and "config.json says dataset is" in section and "<img" not in section

    class StopInFirstEpoch(Callback):
        def on_step_end(self, state):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(quick_config.replace(limit_train=128, limit_test=32), out=tmp_path, name="untrained", quiet=True,
                  callbacks=[StopInFirstEpoch()])
    section = inside_section(RunDir(tmp_path / "untrained"), None)
    assert "Not drawn: " in section and "holds the untrained weights its run started from" in section
    assert "<img" not in section
