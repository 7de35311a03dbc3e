"""Regenerate the README's pictures (docs/images/*.png) from a real, short run.

    PYTHONPATH=src CNNZOO_DATA=../shared/data python3 scripts/readme_images.py

Trains a LeNet-5 on 12,000 Fashion-MNIST images for 4 epochs (about half a minute on a CPU) in a
temporary folder, then draws what cnnzoo draws: the training curves, the confusion matrix, the feature
maps, Grad-CAM, and a screenshot of `cnnzoo serve`'s page in Chromium (Playwright). Every PNG is
reduced to a 256-colour palette so that the pictures together stay a few hundred KB in git.
"""

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DPI = 72


def save_small(png: bytes, name: str, width: int) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(IMAGES / name, optimize=True)
    print(f"{IMAGES / name}: {(IMAGES / name).stat().st_size / 1024:.0f} KB")


def side_by_side(*paths: Path) -> bytes:
    images = [Image.open(path).convert("RGB") for path in paths]
    height = min(image.height for image in images)
    images = [image.resize((round(image.width * height / image.height), height)) for image in images]
    canvas = Image.new("RGB", (sum(image.width for image in images), height), "white")
    for k, image in enumerate(images):
        canvas.paste(image, (sum(i.width for i in images[:k]), 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def screenshot(run: Path) -> bytes:
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen([sys.executable, "-m", "cnnzoo", "serve", str(run), "--port", "0"],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        address = server.stdout.readline().split(" at ")[1].split()[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1180, "height": 760})
            page.goto(address, wait_until="load")
            box = page.locator("#canvas").bounding_box()
            # A sneaker's outline, drawn as a user would: sole, toe, heel.
            stroke = [(40, 190), (240, 190), (250, 160), (170, 140), (120, 100), (60, 100), (40, 190)]
            page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
            page.mouse.down()
            for x, y in stroke[1:]:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
            page.mouse.up()
            page.wait_for_function("document.querySelectorAll('#top li').length === 5 && "
                                   "document.querySelector('#maps').naturalWidth > 0")
            # The page answers strokes one request at a time; wait until none is out or waiting.
            page.wait_for_function("!busy && !waiting")
            png = page.screenshot(full_page=True)
            browser.close()
        return png
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    import cnnzoo
    from cnnzoo.viz.inside import feature_maps_figure, overview_figure
    from cnnzoo.viz.notebook import figure_png

    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cnnzoo-readme-") as folder:
        config = cnnzoo.TrainConfig(model="lenet5", dataset="fashion-mnist", epochs=4, batch_size=64, optimizer="adamw",
                                    lr=3e-3, schedule="cosine", limit_train=12000, seed=0, device="cpu")
        run_dir, _ = cnnzoo.train_run(config, out=folder, name="lenet5-readme", quiet=True)
        run = Path(run_dir.path)
        save_small(side_by_side(run / "loss.png", run / "accuracy.png"), "curves.png", 900)
        save_small((run / "confusion.png").read_bytes(), "confusion.png", 760)
        look = cnnzoo.inspect(run, [0, 2, 12])
        save_small(figure_png(overview_figure(look), dpi=DPI), "gradcam.png", 640)
        save_small(figure_png(feature_maps_figure(look.activations["features.0"][0], "features.0"), dpi=DPI),
                   "feature-maps.png", 640)
        save_small(screenshot(run), "serve.png", 900)


if __name__ == "__main__":
    main()
