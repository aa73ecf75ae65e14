"""Shared test set-up: never touch the network, keep thread counts small, hold every test to the rule for ``slow``.

Helpers that tests import (builders of data, twins of released models, tiny parts) live in ``tests/support/``.
"""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs two pytest processes on the two cores: one thread each (and in the processes they start),
    # or oversubscribed OpenMP threads stall each other at every barrier.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

# The rule for `slow` (docs/development.md): a test that starts another process running the kit (python, make,
# DDP workers) or takes over 30 s alone on the 2-core machine is marked slow. The first half is enforced here.


@pytest.fixture(autouse=True)
def _slow_rule(request, monkeypatch):
    """Refuse, in a test not marked ``slow``, to start a Python interpreter or ``make``: the rule, enforced."""
    if request.node.get_closest_marker("slow"):
        return
    popen_init = subprocess.Popen.__init__

    def checked(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
        program = (str(argv[0]).split() or [""])[0] if argv else ""
        name = Path(program).name
        if program == sys.executable or name.startswith("python") or name == "make":
            pytest.fail(
                f"{request.node.nodeid} starts `{program}`: mark it @pytest.mark.slow (tests/conftest.py)"
            )
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", checked)


@pytest.fixture(scope="session")
def llava_twin(tmp_path_factory):
    """A tiny random LLaVA-OneVision folder in HF format (tests/support/llava_twin.py), written once per session."""
    from support.llava_twin import write_llava_twin

    return write_llava_twin(tmp_path_factory.mktemp("llava_twin"))


@pytest.fixture(scope="session")
def llava_twin_processor(tmp_path_factory):
    """The twin with LLaVA-OneVision's processor saved by ``save_pretrained`` (``chat_template.jinja`` with the
    conversion script's processor template, ``processor_config.json``; tests/support/llava_twin.py)."""
    from support.llava_twin import save_processor, write_llava_twin

    return save_processor(write_llava_twin(tmp_path_factory.mktemp("llava_twin_processor")))


# Tiny random twins of the transformers families zero-shot evaluation reads through Auto classes
# (tests/support/vlm_twins.py): config.json, safetensors, generation_config.json and the processor, written once per session.
VLM_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "idefics3")


@pytest.fixture(scope="session")
def vlm_twins(tmp_path_factory):
    """family -> a function that writes that family's twin on first use and returns its folder."""
    from support.vlm_twins import write_idefics3_twin, write_qwen2_vl_twin

    writers = {
        "qwen2_vl": lambda folder: write_qwen2_vl_twin(folder, family="qwen2_vl"),
        "qwen2_5_vl": lambda folder: write_qwen2_vl_twin(folder, family="qwen2_5_vl"),
        "idefics3": write_idefics3_twin,
    }
    folders = {}

    def twin(family: str):
        if family not in folders:
            folders[family] = writers[family](tmp_path_factory.mktemp(f"{family}_twin"))
        return folders[family]

    return twin


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is as fast, and 2 shared cores oversubscribed by OpenMP are ~10x slower.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_configure(config):
    # Registered here, not in pyproject.toml: the Makefile's setup stamp hashes pyproject.toml (a change there
    # reinstalls the environment).
    config.addinivalue_line(
        "markers",
        "real_width: the ~35-minute, up to ~17 GiB real-width run (make real-width); needs --real-width",
    )


def pytest_addoption(parser):
    parser.addoption(
        "--real-width",
        action="store_true",
        help="run the tests marked real_width (make real-width at LLaVA-OneVision-0.5B's widths: ~35 min, up to ~17 GiB)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--real-width"):
        return
    skip = pytest.mark.skip(reason="the real-width run: pass --real-width (not part of make test)")
    for item in items:
        if "real_width" in item.keywords:
            item.add_marker(skip)
