"""The README's "use mdp in your own LightningModule" example runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- mdp-example:start -->", "<!-- mdp-example:end -->"


def example_code() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "README must hold exactly one mdp example block"
    section = text[text.index(START) + len(START) : text.index(END)]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 1, (
        f"expected one ```python block between the mdp-example markers, found {len(blocks)}"
    )
    return blocks[0]


def test_readme_mdp_example_runs(tmp_path):
    # A fresh process in an empty folder: nothing leaks from other tests, nothing is written to the repo.
    script = (
        example_code()
        + "\nassert trainer.global_step == 2, trainer.global_step\nprint('README-EXAMPLE-OK')\n"
    )
    # One thread: the machine's cores are shared with other test processes, and oversubscribed
    # OpenMP threads make two tiny steps take seconds.
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "README-EXAMPLE-OK" in proc.stdout
    assert not any(tmp_path.iterdir()), (
        f"the example wrote files: {sorted(p.name for p in tmp_path.iterdir())}"
    )
