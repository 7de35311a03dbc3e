"""Every shipped notebook, executed top to bottom by a real Jupyter kernel with tiny settings, and
checked for what a reader sees: no errors, the pictures, the numbers the lessons talk about."""

import base64
import re

import pytest

from conftest import NOTEBOOKS

# Tiny settings per notebook, assigned after its parameters cell: seconds each on two CPU cores.
TINY = {
    "01-lenet5.ipynb": {"EPOCHS": 2, "LIMIT_TRAIN": 4096, "LIMIT_TEST": 500},
    "02-batch-norm.ipynb": {"EPOCHS": 2, "LIMIT_TRAIN": 4096, "LIMIT_TEST": 500},
    "03-alexnet-vgg.ipynb": {"SIZE": 72, "LIMIT_TRAIN": 128, "BENCH_EPOCHS": 2},  # bench times epochs after the first
    "04-resnet18-transfer.ipynb": {"SIZE": 32, "EPOCHS": 1, "LIMIT_TRAIN": 1024, "LIMIT_TEST": 128},
    "05-compare.ipynb": {"EPOCHS": 2, "LIMIT_TRAIN": 4096, "LIMIT_TEST": 500},
    "06-keras-twins.ipynb": {"EPOCHS": 2, "LIMIT_TRAIN": 8000, "LIMIT_TEST": 500},
    "07-what-the-network-sees.ipynb": {"EPOCHS": 2, "LIMIT_TRAIN": 4096, "LIMIT_TEST": 300, "RESNET_EPOCHS": 1,
                                       "RESNET_LIMIT_TRAIN": 1024},
    "08-modern-cnns.ipynb": {"EPOCHS": 1, "LIMIT_TEST": 128},  # its own small LIMIT_TRAIN, one per model
}
TRAINS = {"01-lenet5.ipynb", "02-batch-norm.ipynb", "04-resnet18-transfer.ipynb", "05-compare.ipynb",
          "06-keras-twins.ipynb", "07-what-the-network-sees.ipynb", "08-modern-cnns.ipynb"}


def outputs(book):
    return [(i, out) for i, cell in enumerate(book.cells) if cell.cell_type == "code" for out in cell.outputs]


def shown_text(out) -> str:
    return out.get("text", "") + out.get("data", {}).get("text/plain", "") + out.get("data", {}).get("text/html", "")


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TINY)


def test_shipped_notebooks_carry_no_outputs_and_set_everything_in_their_first_code_cell():
    import nbformat

    for name in TINY:
        book = nbformat.read(NOTEBOOKS / name, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), name
        assert "parameters" in code[0].metadata["tags"] and "FULL = False" in code[0].source, name
        assert book.cells[0].cell_type == "markdown" and book.cells[0].source.startswith("# "), name


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs_top_to_bottom_and_shows_what_it_teaches(name, run_notebook):
    book, client, seconds = run_notebook(name, **TINY[name])
    everything = outputs(book)
    errors = [out for _, out in everything if out.output_type == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    text = "\n".join(shown_text(out) for _, out in everything)
    assert "Traceback" not in text and "TqdmWarning" not in text and "IProgress" not in text
    assert not [out for _, out in everything if out.get("name") == "stderr"], "nothing on stderr"
    pictures = [out for _, out in everything if "image/png" in out.get("data", {})]
    assert pictures, "a plot is drawn as an image/png output"
    for out in pictures:
        assert base64.b64decode(out["data"]["image/png"]).startswith(b"\x89PNG")
    assert all("<Figure size" not in out.get("data", {}).get("text/plain", "") or "image/png" in out["data"]
               for _, out in everything), "a figure shown as text"
    if name in TRAINS:
        accuracies = [float(m) for m in re.findall(r"final (?:test )?accuracy:? (\d+\.\d+)%", text)]
        assert accuracies and max(accuracies) > 20, "a final accuracy well above chance (10%)"
    if name == "01-lenet5.ipynb":
        summaries = [out for _, out in everything if "Total params" in shown_text(out)]
        assert len(summaries) == 2 and all("61,706" in out["data"]["text/html"] for out in summaries)
    if name == "08-modern-cnns.ipynb":
        for parameters in ("1,992,166 parameters", "5,977,530 parameters", "758,226 parameters"):  # the book's counts
            assert parameters in text
        assert "logits equal its channel means: True" in text and "concatenated: (1, 256, 12, 12)" in text
        assert "after the transition: (1, 96, 12, 12)" in text
        assert all(f"{model}-course" in text for model in ("nin", "googlenet", "densenet"))  # the leaderboard
    if name == "06-keras-twins.ipynb":
        assert "61,706" in text and "on the torch backend" in text  # Keras's own summary table
        (agreement,) = re.findall(r"same class for (\d+\.\d+)% of", text)
        assert float(agreement) >= 99.9
        assert "identical weights: True" in text
    if name == "07-what-the-network-sees.ipynb":
        assert "features.0 (6, 1, 5, 5)" in text and "Grad-CAM layer: layer" in text  # LeNet's filters, ResNet's CAM
        assert len(pictures) == 7 and "<h4>Inspection</h4>" in text  # the display (HTML) and seven figures


def test_a_training_cell_keeps_one_live_area_updated_in_place_ending_with_the_curves(run_notebook):
    book, client, _ = run_notebook("01-lenet5.ipynb", **TINY["01-lenet5.ipynb"])
    (index,) = [i for i, c in enumerate(book.cells) if "cnnzoo.fit(" in c.source]
    cell_outputs = book.cells[index].outputs
    assert len(cell_outputs) == 1, [o.output_type for o in cell_outputs]  # no appended lines or bars
    (area,) = cell_outputs
    assert area.output_type == "display_data"
    assert client.updates.get(index, 0) >= 3  # the same area, replaced while training
    final = area.data["text/html"]
    assert area.data["text/plain"].startswith("done: 2 epochs")
    assert final.count('src="data:image/png;base64,') == 1  # the curves
    assert final.count("<tr>") == 1 + 2  # and the table of both epochs
