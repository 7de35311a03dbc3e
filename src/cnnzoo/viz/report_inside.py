"""The report's "Inside the network" section: the first layer's filters, and the feature maps and
Grad-CAM of a few test images, the run's most confident mistakes among them.

Drawn from the run's checkpoint each time the report is written and embedded in the page; nothing
is written into the run directory. Where something is missing (no checkpoint yet, the data set not
on this machine, captum not installed) the section says so in one sentence instead."""

from __future__ import annotations

from cnnzoo.data import load_split
from cnnzoo.errors import CnnzooError
from cnnzoo.train.rundir import RunDir
from cnnzoo.train.trained import load_trained
from cnnzoo.viz.inside import combined_figure
from cnnzoo.viz.notebook import escape, figure_png, img_tag

__all__ = ["inside_section", "report_images"]

CORRECT_SHOWN = 2
MISTAKES_SHOWN = 2
REPORT_DPI = 80  # the section's one picture stays a few hundred KB inside the HTML


def report_images(evaluation: dict | None, labels, predicted_at) -> list[int]:
    """Test indices to show: the most confident mistakes evaluation.json lists, after the first test
    images the model gets right (`predicted_at(indices)` gives its predictions)."""
    mistakes = [int(m["index"]) for m in (evaluation or {}).get("misclassified", [])][:MISTAKES_SHOWN]
    candidates = [i for i in range(min(len(labels), 64)) if i not in mistakes]
    predicted = predicted_at(candidates)
    correct = [i for i, p in zip(candidates, predicted) if int(p) == int(labels[i])][:CORRECT_SHOWN]
    return correct + mistakes


def inside_section(run: RunDir, evaluation: dict | None) -> str:
    """The section's HTML (a <section> element)."""
    try:
        body = _body(run, evaluation)
    except CnnzooError as error:
        body = f'<p class="note">Not drawn: {escape(error)}</p>'
    return f'<section id="inside"><h2>Inside the network</h2>{body}</section>'


def _body(run: RunDir, evaluation: dict | None) -> str:
    import torch

    from cnnzoo.viz.inspection import inspect_model

    if not run.checkpoint("best").is_file():
        raise CnnzooError("the run has no checkpoint yet; the section appears once an epoch has finished.")
    # Whatever evaluate and predict would refuse (an untrained start, overflowing weights, a checkpoint
    # config.json contradicts) is not drawn either.
    trained = load_trained(run.path)
    model, spec, classes = trained.model, trained.input_spec, trained.classes
    test = load_split(trained.config.dataset, "test", root=trained.config.data_dir, download=False)

    def predicted_at(indices):
        with torch.no_grad():
            return model(spec(test.images[indices])).argmax(1).tolist()

    indices = report_images(evaluation, test.labels, predicted_at)
    inspection = inspect_model(model, test.images[indices], classes=classes, input_spec=spec,
                               labels=test.labels[indices].tolist(), sources=[f"test #{i}" for i in indices])
    picture = img_tag(figure_png(combined_figure(inspection), dpi=REPORT_DPI),
                      "filters, Grad-CAM, saliency and feature maps of test images")
    return (f"<p>Test images {', '.join(f'#{i}' for i in indices)} (mistakes' titles in red): what the model "
            f"predicted, where it looked for that class (Grad-CAM at <code>{escape(inspection.gradcam_layer)}"
            f"</code>), which pixels move the score most (saliency), the filters of "
            f"<code>{escape(inspection.filter_layer)}</code> and the first image's maps there. "
            f"<code>cnnzoo inspect</code> and <code>cnnzoo serve</code> show any image.</p>{picture}")
