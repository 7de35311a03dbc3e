"""The README's two commands, run as written in a fresh clone, without the network."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Flags appended to the main command so that it trains for seconds instead of minutes.
SHORT_RUN = "--epochs 1 --limit-train 512 --limit-test 256 --device cpu"
# A small, fast test file for the test command (not this one: the test would run itself).
TEST_SUBSET = "tests/models/test_registry.py"


def readme_commands() -> tuple[str, str]:
    """The main and the test command: the two bash blocks under "## Two commands"."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]
    assert len(blocks) == 2, f"README's 'Two commands' section should hold exactly two bash blocks, found {blocks}"
    assert all("\n" not in block for block in blocks), blocks
    return blocks[0], blocks[1]


def test_ci_runs_the_readme_test_command_exactly():
    _, test_command = readme_commands()
    lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in lines


def test_main_command_installs_no_test_tools():
    main_command, _ = readme_commands()
    assert main_command.startswith("scripts/install.sh && ")  # no extras: only what the main job needs


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory, data_root):
    """A clone of this repository and a virtual environment that sees the installed packages but
    not cnnzoo from anywhere else, with pip barred from any package index."""
    where = tmp_path_factory.mktemp("fresh")
    clone = where / "cnnzoo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    venv = where / "venv"
    # --without-pip: a venv's own pip would bring an old setuptools that shadows the installed one.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    # The tests must not reach the network; apt-get would try to when chromium is missing.
    stubs = where / "stubs"
    stubs.mkdir()
    (stubs / "apt-get").write_text("#!/bin/sh\necho 'apt-get: no network in this test' >&2\nexit 100\n")
    (stubs / "apt-get").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{stubs}{os.pathsep}{env['PATH']}", PIP_NO_INDEX="1",
               CNNZOO_DATA=str(data_root), HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    return clone, env


def run_shell(command: str, clone: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=600)


def test_readme_main_command_installs_and_trains_in_a_fresh_clone(fresh_clone):
    clone, env = fresh_clone
    main_command, _ = readme_commands()
    assert main_command.split("&&")[-1].split()[:3] == ["CNNZOO_DATA=${CNNZOO_DATA:-../shared/data}", "python3",
                                                        "-m"], "the flags that shorten the run go at its end"
    done = run_shell(f"{main_command} {SHORT_RUN}", clone, env)
    assert done.returncode == 0, done.stdout + done.stderr
    where = subprocess.run(["python3", "-c", "import cnnzoo; print(cnnzoo.__file__)"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(clone / "src"), where
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("done:") and "report.html" in last, done.stdout
    report = Path(last.split()[-1])
    report = report if report.is_absolute() else clone / report
    assert report.is_file() and report.name == "report.html"


def test_readme_test_command_installs_and_passes_in_a_fresh_clone(fresh_clone):
    clone, env = fresh_clone
    _, test_command = readme_commands()
    done = run_shell(f"{test_command} {TEST_SUBSET}", clone, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\d+ passed", done.stdout) and " failed" not in done.stdout, done.stdout
