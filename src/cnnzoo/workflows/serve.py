"""`cnnzoo serve RUN_DIR`: a local web page to try a trained model.

Draw with the mouse, upload an image or pick a random test image; the page shows the 28×28 input as the model
sees it, the top classes, one layer's feature maps and the Grad-CAM overlay, redrawn as you draw. Entry:
:func:`serve`; :func:`build_app` is the FastAPI app, :class:`Session` its answers; docs/INSPECT.md has the rest.
"""


import base64
import binascii
import io
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

from cnnzoo.data import canonical_dataset_name, load_image, load_split
from cnnzoo.errors import CnnzooError
from cnnzoo.train.trained import load_trained

__all__ = ["build_app", "serve", "MAX_UPLOAD_BYTES"]

MAX_UPLOAD_BYTES = 20_000_000  # a photo from a phone fits; anything larger is refused before decoding
TOP_K = 5
_PAGE = Path(__file__).with_name("serve_page.html")  # the whole page: one HTML file with a small script


def _import_server():
    # FastAPI and uvicorn (the optional `serve` extra), not Gradio: every Gradio release that installs beside
    # cnnzoo's other dependencies requires pillow < 13, and cnnzoo runs on pillow 13, which pip would have to
    # downgrade (docs/INSPECT.md).
    try:
        import fastapi
        import uvicorn
    except ImportError:
        raise CnnzooError("cnnzoo serve needs FastAPI and uvicorn: pip install 'cnnzoo[serve]'.") from None
    return fastapi, uvicorn


def _png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class Session:
    """The model of one run, and the answer to one image: what the page shows. The run directory is only read."""

    def __init__(self, run: str | os.PathLike, device: str = "cpu"):
        self.trained = load_trained(run, device=device)
        self.dataset = canonical_dataset_name(self.trained.config.dataset)
        self.name = Path(run).name
        self._test = None
        # One inspection at a time: the model's hooks and matplotlib's figures are not for two threads.
        self._lock = threading.Lock()

    def test_split(self):
        if self._test is None:
            self._test = load_split(self.dataset, "test", root=self.trained.config.data_dir)
        return self._test

    def decode(self, data_url: str):
        """uint8 (1, 1, 28, 28) from an uploaded or drawn image's data URL, framed as `predict` frames files."""
        if not isinstance(data_url, str) or "," not in data_url:
            raise CnnzooError("The upload is not an image: send a PNG, JPEG or other picture file.")
        try:
            raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            raise CnnzooError("The upload is not valid base64 image data: pick the file again.") from None
        if len(raw) > MAX_UPLOAD_BYTES:
            raise CnnzooError(f"The image is too large ({len(raw) / 1e6:.0f} MB, the limit is "
                              f"{MAX_UPLOAD_BYTES // 1_000_000} MB); shrink it first.")
        # load_image reads files; the upload goes to the system's temporary folder, never the run directory.
        with tempfile.TemporaryDirectory(prefix="cnnzoo-serve-") as folder:
            path = Path(folder) / "upload"
            path.write_bytes(raw)
            try:
                return load_image(path, framing=self.dataset).unsqueeze(0)
            except CnnzooError as error:
                message = str(error).replace(f"Image file {path}", "The uploaded image").replace(str(path), "The upload")
                raise CnnzooError(message) from None

    def answer(self, request: dict) -> dict:
        """The page's view of one image: `request` holds `image` (a data URL) or `test_index`
        (an int, or null for a random one), and optionally `layer`."""
        from cnnzoo.viz.inspection import inspect_model

        labels, source, index = None, "your image", None
        if "test_index" in request:
            test = self.test_split()
            index = request["test_index"]
            index = random.randrange(len(test)) if index is None else int(index)
            if not 0 <= index < len(test):
                raise CnnzooError(f"test index {index} is out of range: 0 to {len(test) - 1}.")
            pixels, labels = test.images[index : index + 1].cpu(), [int(test.labels[index])]
            source = f"test image #{index} (true class: {test.classes[labels[0]]})"
        else:
            pixels = self.decode(request.get("image"))
        with self._lock:
            inspection = inspect_model(self.trained.model, pixels, classes=self.trained.classes,
                                       input_spec=self.trained.input_spec, labels=labels)
            return {**self._render(inspection, request.get("layer"), source), "test_index": index}

    def _render(self, inspection, layer: str | None, source: str) -> dict:
        from matplotlib.figure import Figure
        from PIL import Image

        from cnnzoo.viz.inside import feature_maps_figure, gradcam_title, overlay
        from cnnzoo.viz.notebook import figure_png

        layers = inspection.feature_layers()
        layer = layer if layer in layers else inspection.filter_layer
        big = Image.fromarray(inspection.images[0]).resize((168, 168), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        big.save(buffer, format="PNG")
        cam = Figure(figsize=(2.4, 2.4), layout="constrained")
        overlay(cam.add_subplot(), inspection.images[0], inspection.gradcam[0])
        return {
            "source": source,
            "input": _png_data_url(buffer.getvalue()),
            "top": [{"class": name, "p": p} for name, p in inspection.top_k(TOP_K)[0]],
            "layers": layers,
            "layer": layer,
            "feature_maps": _png_data_url(figure_png(feature_maps_figure(inspection.activations[layer][0], layer))),
            "gradcam": _png_data_url(figure_png(cam)),
            "gradcam_caption": f"{gradcam_title(inspection, 0)}, at layer {inspection.gradcam_layer}",
        }


def build_app(session: Session):
    """The FastAPI application: the page at /, the model behind POST /api/inspect, which answers a bad
    upload with one sentence (JSON ``error``) that the page shows."""
    fastapi, _ = _import_server()
    from fastapi.responses import HTMLResponse, JSONResponse

    app = fastapi.FastAPI(title=f"cnnzoo: {session.name}", docs_url=None, redoc_url=None, openapi_url=None)
    page = _PAGE.read_text(encoding="utf-8").replace("{{RUN}}", session.name)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.post("/api/inspect")
    async def inspect_image(request: fastapi.Request):
        length = request.headers.get("content-length")
        # base64 is 4/3 of the bytes: refuse an oversized body before reading it.
        if length and length.isdigit() and int(length) > MAX_UPLOAD_BYTES * 4 // 3 + 4096:
            return JSONResponse({"error": f"The image is too large (over {MAX_UPLOAD_BYTES // 1_000_000} MB); "
                                          "shrink it first."}, status_code=413)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return JSONResponse({"error": "The request was not the page's JSON; reload the page."}, status_code=400)
        try:
            return await fastapi.concurrency.run_in_threadpool(session.answer, body)
        except CnnzooError as error:
            return JSONResponse({"error": str(error)}, status_code=400)

    return app


def serve(run: str | os.PathLike, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu") -> None:
    """Serve the page for `run` until interrupted; prints one line with the address once it listens
    (port 0 picks a free port, and the line names it). It listens on 127.0.0.1 unless `host` says otherwise."""
    _, uvicorn = _import_server()
    session = Session(run, device=device)
    app = build_app(session)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise CnnzooError(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port.") from None
    listener.listen(64)
    bound = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"serving {session.name} at http://{shown}:{bound}/ (Ctrl-C stops)", flush=True)
    server.run(sockets=[listener])
