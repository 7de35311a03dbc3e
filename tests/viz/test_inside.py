"""The pictures of an inspection: the figures hold what they say, and the notebook display is HTML."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cnnzoo.errors import CnnzooError
from cnnzoo.models import build_model
from cnnzoo.viz.inside import KINDS, combined_figure, filters_figure
from cnnzoo.viz.inspection import inspect_model


@pytest.fixture(scope="module")
def inspection():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return inspect_model(build_model("lenet5"), images, classes=[str(k) for k in range(10)], labels=[3, 4])


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_plot_is_a_figure(inspection, kind):
    result = inspection.plot(kind)
    figures = result if isinstance(result, list) else [result]
    assert figures and all(isinstance(fig, Figure) for fig in figures)


def test_the_filter_panels_show_the_weights(inspection):
    fig = filters_figure(inspection.filters, inspection.filter_layer)
    shown = [ax.get_images()[0].get_array() for ax in fig.get_axes()]
    assert len(shown) == 6
    np.testing.assert_array_equal(np.asarray(shown[2]), inspection.filters[2, 0])


def test_the_feature_map_panels_show_the_chosen_layer(inspection):
    fig = inspection.plot("feature_maps", layer="features.2", index=1)
    first = fig.get_axes()[0].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(first), inspection.activations["features.2"][1, 0])
    with pytest.raises(CnnzooError, match="flat vector"):
        inspection.plot("feature_maps", layer="classifier.0")
    with pytest.raises(CnnzooError, match="kind must be one of"):
        inspection.plot("x-ray")


def test_the_combined_figure_and_the_notebook_display(inspection, assert_valid_html):
    fig = combined_figure(inspection)
    assert len(fig.subfigs) == 3
    html = inspection._repr_html_()
    assert_valid_html(html)
    assert html.count("<img") == 3 and "<li>image 0: " in html


def test_the_text_form_is_one_line_of_top_classes(inspection):
    text = repr(inspection)
    assert text.startswith("Inspection(2 images: ") and "Grad-CAM at features.5" in text and "\n" not in text
