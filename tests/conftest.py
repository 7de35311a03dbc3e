"""Shared fixtures: the real data from $CNNZOO_DATA (set by .ci/run); missing data FAILS, never skips."""

import errno
import os
import shutil
from pathlib import Path

import pytest


# The project's data sits in ../shared/data beside the checkout; use it when CNNZOO_DATA is unset so
# that a plain `python3 -m pytest` works, and export it so that in-process CLI calls see it too.
_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not os.environ.get("CNNZOO_DATA") and _SHARED_DATA.is_dir():
    os.environ["CNNZOO_DATA"] = str(_SHARED_DATA)


def _data_root() -> Path:
    from cnnzoo.data import DATASETS

    value = os.environ.get("CNNZOO_DATA")
    if not value:
        pytest.fail("CNNZOO_DATA is not set and ../shared/data does not exist; point CNNZOO_DATA at the folder "
                    "holding FashionMNIST/raw and MNIST/raw.", pytrace=False)
    root = Path(value)
    missing = [
        str(root / info.folder / "raw" / name)
        for info in DATASETS.values()
        for split in ("train", "test")
        for name, _ in info.files(split)
        if not (root / info.folder / "raw" / name).is_file()
    ]
    if missing:
        pytest.fail(f"CNNZOO_DATA={root} lacks the data files: {', '.join(missing)}", pytrace=False)
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _data_root()


@pytest.fixture
def quick_config(data_root):
    """A LeNet-5 run small enough for the CPU in a few seconds."""
    from cnnzoo.train import TrainConfig

    return TrainConfig(model="lenet5", dataset="fashion-mnist", epochs=2, batch_size=64, optimizer="adamw",
                       lr=3e-3, limit_train=1024, limit_test=256, data_dir=str(data_root), device="cpu")


@pytest.fixture(scope="session")
def tv_weights(tmp_path_factory):
    """A torchvision ResNet-18 state_dict saved as torchvision users do, with non-trivial BN statistics."""
    import torch
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return path


_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _check_html(text: str) -> None:
    """Every tag closed in order and nothing left open: what a notebook needs to render a fragment."""
    from html.parser import HTMLParser

    class Checker(HTMLParser):
        def __init__(self):
            super().__init__()
            self.open: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in _VOID_TAGS:
                self.open.append(tag)

        def handle_endtag(self, tag):
            assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:] or 'nothing'}"
            self.open.pop()

    checker = Checker()
    checker.feed(text)
    checker.close()
    assert not checker.open, f"left open: {checker.open}"


@pytest.fixture
def assert_valid_html():
    """``assert_valid_html(text)`` fails unless the HTML's tags are balanced."""
    return _check_html


@pytest.fixture
def no_space():
    """A stand-in for any writing call (a method or a function) that fails as a full disk does."""
    def write(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


@pytest.fixture
def fake_cuda_card(monkeypatch):
    """``fake_cuda_card(capability, name)``: a CUDA machine with one such card, as far as the runtime can
    tell, so that what each card class runs is decided (and tested) on the CPU."""
    import torch

    def install(capability: tuple[int, int] = (9, 0), name: str = "NVIDIA H200",
                arch_list=("sm_75", "sm_80", "sm_90")) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch_list))

    return install


@pytest.fixture(scope="session")
def trained_lenet_run(tmp_path_factory, data_root) -> Path:
    """A finished LeNet-5 run that has learned something (about 70% on Fashion-MNIST, ~10 s on a CPU),
    for the tests that look inside a trained model; treat it as read-only."""
    from cnnzoo.train import TrainConfig
    from cnnzoo.workflows import train_run

    config = TrainConfig(model="lenet5", dataset="fashion-mnist", epochs=3, batch_size=64, optimizer="adamw",
                         lr=3e-3, limit_train=8192, limit_test=500, data_dir=str(data_root), device="cpu")
    run_dir, _ = train_run(config, out=tmp_path_factory.mktemp("inside"), name="lenet", quiet=True)
    return Path(run_dir.path)


_TORCH_LOGGERS = ("torch", "torch._dynamo", "torch._inductor")
_TORCH_TRACE = "torch.__trace"  # always at DEBUG by torch's design; harmless while it does not propagate


def _torch_logging_state() -> dict:
    import logging

    state = {name: logging.getLogger(name).level for name in _TORCH_LOGGERS}
    state[_TORCH_TRACE] = logging.getLogger(_TORCH_TRACE).propagate
    return state


@pytest.fixture(autouse=True)
def torch_logging_left_as_found():
    """No test may change torch's log levels for the rest of the process (a test that needs torch's
    DEBUG logs sets them inside itself and restores them): the CUDA suite once printed thousands of
    DEBUG trace lines over its failures. A test that leaves them louder fails, by name, and they are
    restored so that the tests after it are not affected."""
    import logging

    before = _torch_logging_state()
    yield
    after = _torch_logging_state()
    # torch configures its own loggers lazily (NOTSET to WARNING): only a level below INFO counts.
    louder = [name for name in _TORCH_LOGGERS if after[name] != before[name] and 0 < after[name] < logging.INFO]
    if after[_TORCH_TRACE] and not before[_TORCH_TRACE]:
        louder.append(_TORCH_TRACE)
    for name in louder:
        if name == _TORCH_TRACE:
            logging.getLogger(name).propagate = False
        else:
            logging.getLogger(name).setLevel(before[name])
    assert not louder, f"this test left torch's loggers {louder} louder than it found them; restore them when it ends"


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # where scripts/test.sh finds or installs it
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium through Playwright, for the pages cnnzoo writes (report.html) and serves."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test.sh, which installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
