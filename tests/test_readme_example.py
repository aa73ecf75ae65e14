"""`mdp` as another project gets it: the wheel built from this repository holds `mdp` alone and requires
torch alone, and the README's "Use `mdp` in your own project" example runs from that wheel in a project
that has its own `callbacks/` and `experiments/` packages, with nothing of this checkout on the path."""

import email.parser
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
START, END = "<!-- mdp-example:start -->", "<!-- mdp-example:end -->"
# What a build must not see: caches, the virtualenv, run outputs (none of it is source).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "logs", "lightning_logs", "checkpoints",
    "outputs", "runs", "bench_results", ".cache", ".pytest_cache", ".ruff_cache", "*.ckpt",
)  # fmt: skip


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "README must hold exactly one mdp example block"
    return text[text.index(START) + len(START) : text.index(END)]


def example_code() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", readme_section(), flags=re.S | re.M)
    assert len(blocks) == 1, (
        f"expected one ```python block between the mdp-example markers, found {len(blocks)}"
    )
    return blocks[0]


def canonical(name: str) -> str:
    """pip compares extra names normalised (PEP 685): `open_clip` and `open-clip` are one extra."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip(*args: str, cwd: Path) -> None:
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this repository, built offline from a copy of it (setuptools writes build/ and
    *.egg-info beside pyproject.toml; the checkout stays untouched). The copy holds every source folder
    of the kit, so what lands in the wheel is decided by pyproject's package selection alone."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE, symlinks=True)
    pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(src), cwd=tmp)
    (built,) = (tmp / "dist").glob("*.whl")
    return built


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(name).decode())


def test_wheel_holds_mdp_only(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"mdp"}, f"the wheel installs more than mdp: {sorted(top)}"
    assert "mdp/model_configs/mdp-ViT-T-16-SigLIP.json" in names  # package data of the tiny test models
    assert wheel.name.startswith("m3diff_mdp-")


def test_wheel_requires_torch_only(wheel):
    meta = metadata(wheel)
    assert meta["Name"] == "m3diff-mdp"
    required = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert [re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0] for r in required] == ["torch"], required
    assert {canonical(e) for e in meta.get_all("Provides-Extra")} == {"timm", "open-clip", "hf", "all"}
    assert meta["License-Expression"] == "MIT"


def test_readme_install_lines_name_this_distribution_and_its_extras(wheel):
    extras = {canonical(e) for e in metadata(wheel).get_all("Provides-Extra")}
    installs = re.findall(r"pip install (.+)", readme_section())
    assert len(installs) >= 2, "the section starts with the install line, local path and git URL forms"
    for line in installs:
        named = re.search(r"\[([a-z_,]+)\]", line)
        assert named and {canonical(e) for e in named.group(1).split(",")} <= extras, line
    assert any("m3diff-mdp" in line and "git+" in line for line in installs)


@pytest.mark.slow
def test_readme_example_runs_from_the_wheel_in_another_project(wheel, tmp_path):
    target = tmp_path / "site"
    pip("install", "--no-deps", "--target", str(target), str(wheel), cwd=tmp_path)

    # Someone else's project: its own `callbacks` and `experiments` packages, the names of two kit folders.
    project = tmp_path / "project"
    for package in ("callbacks", "experiments"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"OWNER = 'project'  # {package}\n")
    (project / "train.py").write_text(
        "import callbacks, experiments\n\n"
        + example_code()
        + "\n\nimport importlib.util, sys\n"
        + "assert trainer.global_step == 2, trainer.global_step\n"
        + "assert callbacks.OWNER == experiments.OWNER == 'project'\n"
        + f"assert mdp.__file__.startswith({str(target)!r}), mdp.__file__\n"
        + "assert not [m for m in ('lightning_modules', 'datamodules', 'evaluation') if importlib.util.find_spec(m)]\n"
        # The virtualenv may live inside the checkout (.venv); nothing else of the checkout may be on the path.
        + f"assert not [p for p in sys.path if p.startswith({str(REPO)!r}) and not p.startswith({sys.prefix!r})]\n"
        + "print('README-EXAMPLE-OK')\n"
    )
    before = sorted(p.relative_to(project) for p in project.rglob("*"))

    # -S: the virtualenv's .pth files (its editable install of this checkout) are not read; its
    # site-packages is on PYTHONPATH for torch / lightning / open_clip / timm only, after the wheel's target.
    site_packages = sysconfig.get_paths()["purelib"]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(target), site_packages]),
        PYTHONDONTWRITEBYTECODE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONWARNINGS="ignore",
        OMP_NUM_THREADS="1",  # two tiny steps; oversubscribed threads on shared cores make them take seconds
    )
    proc = subprocess.run(
        [sys.executable, "-S", "train.py"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "README-EXAMPLE-OK" in proc.stdout
    after = sorted(p.relative_to(project) for p in project.rglob("*"))
    assert after == before, f"the example wrote files: {sorted(set(after) - set(before))}"
