"""`make setup`: a failed install stops it with pip's own message, and what it installs is `mdp` alone."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SETUP_FILES = ("Makefile", "pyproject.toml", "requirements.txt", "requirements-dev.txt", "requirements.lock")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_setup_stops_with_pips_error_when_an_install_fails(tmp_path):
    # A copy of the set-up files whose requirements name a package that exists nowhere; no index, so
    # pip fails at once, offline. make creates a fresh .venv there, as on a new machine.
    for name in SETUP_FILES:
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "requirements.txt").write_text("m3diff-no-such-package==1.0\n")
    env = dict(os.environ, PIP_NO_INDEX="1")
    proc = subprocess.run(
        ["make", "--no-print-directory", "setup", f"PYTHON={sys.executable}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "No matching distribution found for m3diff-no-such-package==1.0" in proc.stderr, output
    assert "-e ." not in proc.stdout, "make went on after the failed install"
    assert "setup complete" not in output
    assert not list((tmp_path / ".venv").glob(".setup-*")), "a failed setup must not leave its stamp"


@pytest.mark.slow
def test_the_venv_holds_mdp_and_nothing_else_of_the_kit(tmp_path):
    """From outside the checkout (-I: no current folder, no PYTHONPATH) `mdp` imports and the kit's folders do
    not: they run from the checkout only, so a project's own `callbacks` or `experiments` is never shadowed."""
    probe = (
        "import importlib.util, json, mdp\n"
        "kit = ('callbacks', 'datamodules', 'evaluation', 'experiments', 'lightning_modules')\n"
        "print(json.dumps({'mdp': mdp.__file__, 'kit': [m for m in kit if importlib.util.find_spec(m)]}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"kit": []' in proc.stdout, proc.stdout
