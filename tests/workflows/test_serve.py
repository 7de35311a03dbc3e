"""`cnnzoo serve`: the page in a real Chromium (Playwright), against a server started as a user starts it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cnnzoo

SRC = Path(cnnzoo.__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def server(trained_lenet_run):
    """`cnnzoo serve RUN --port 0`; its first line names the address, printed once the socket listens."""
    before = _snapshot(trained_lenet_run)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "cnnzoo", "serve", str(trained_lenet_run), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving lenet at http://127.0.0.1:"), line + process.stdout.read()
        yield line.split(" at ")[1].split()[0]
    finally:
        process.terminate()
        output = process.communicate()[0]
    assert "Traceback" not in output, output
    assert _snapshot(trained_lenet_run) == before  # the page never writes into the run directory


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("request", lambda req: req.url.startswith((server, "data:")) or problems.append(f"request: {req.url}"))
    page.goto(server, wait_until="load")
    yield page
    page.close()
    assert not problems, problems


def _answers(page, count: int) -> None:
    """Wait until the page has had `count` answers from the server (it counts them in body[data-answered])."""
    page.wait_for_function(f"Number(document.body.dataset.answered || 0) >= {count}")


def _top_class(page) -> str:
    return page.locator("#top li span").first.inner_text()


def test_the_page_loads_with_its_controls(page):
    assert "lenet" in page.title()
    for selector in ("#canvas", "#upload", "#random", "#clear"):
        assert page.locator(selector).is_visible()
    assert page.locator("#message").inner_text() == ""


def test_an_uploaded_test_image_gets_the_class_predict_gives(page, trained_lenet_run, tmp_path, data_root):
    from PIL import Image

    from cnnzoo.data import load_image, load_split
    from cnnzoo.train import predict
    from cnnzoo.workflows import load_trained

    image = tmp_path / "test-7.png"
    Image.fromarray(load_split("fashion-mnist", "test", root=data_root).images[7, 0].numpy()).save(image)
    trained = load_trained(trained_lenet_run)
    probabilities = predict(trained.model, load_image(image, framing="fashion-mnist")[None], **trained.input_spec.kwargs())
    expected = trained.classes[int(probabilities.argmax())]

    page.set_input_files("#upload", str(image))
    _answers(page, 1)
    assert page.locator("#message").inner_text() == ""
    assert _top_class(page) == expected
    assert page.locator("#top li").count() == 5
    # The feature maps and the Grad-CAM overlay arrive as PNG images the browser decodes.
    for selector in ("#maps", "#gradcam", "#input"):
        page.wait_for_function(f"document.querySelector('{selector}').complete && "
                               f"document.querySelector('{selector}').naturalWidth > 0")
    assert page.locator("#maps").bounding_box()["width"] > 200


def test_drawing_on_the_canvas_gives_a_prediction(page, trained_lenet_run):
    from cnnzoo.workflows import load_trained

    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 40)
    page.mouse.down()
    for step in range(1, 11):  # a vertical bar, like a pair of trousers or a 1
        page.mouse.move(box["x"] + 140, box["y"] + 40 + 20 * step)
    page.mouse.up()
    page.wait_for_function("document.querySelectorAll('#top li').length === 5")
    assert _top_class(page) in load_trained(trained_lenet_run).classes
    assert page.locator("#message").inner_text() == ""


def test_a_random_test_image_names_its_true_class(page):
    page.click("#random")
    _answers(page, 1)
    assert page.locator("#source").inner_text().startswith("test image #")


@pytest.mark.parametrize("name, content", [
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20),
    ("notes.png", b"these are not pixels"),
])
def test_a_corrupt_upload_shows_a_message_and_the_server_keeps_serving(page, tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    page.set_input_files("#upload", str(bad))
    _answers(page, 1)
    message = page.locator("#message").inner_text()
    assert message.startswith("The upload") and "Traceback" not in message and str(tmp_path) not in message, message
    page.click("#random")  # the same server answers the next request
    _answers(page, 2)
    assert page.locator("#message").inner_text() == ""
    assert page.locator("#top li").count() == 5


def test_a_huge_or_oddly_moded_upload_is_answered_in_the_page(page, tmp_path):
    import numpy as np
    from PIL import Image

    odd = tmp_path / "sixteen-bit.png"
    Image.fromarray((np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 80)).save(odd)  # mode I;16
    page.set_input_files("#upload", str(odd))
    _answers(page, 1)
    assert page.locator("#message").inner_text() == ""  # 16-bit images are read as predict reads them
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 9000)).save(huge)  # 81 megapixels, over load_image's limit, a small file
    page.set_input_files("#upload", str(huge))
    _answers(page, 2)
    assert "too large" in page.locator("#message").inner_text()
