"""Dependencies are declared honestly: every third-party import is declared where it belongs, and nothing
is declared that no code imports (the few exceptions say why).

- `mdp/` (the m3diff-mdp distribution): pyproject's dependencies and extras.
- the kit (lightning_modules/, datamodules/, callbacks/, evaluation/, experiments/, and mdp/, which
  `make setup` installs with --no-deps): requirements.txt.
- tests/: requirements.txt + requirements-dev.txt.
"""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KIT = ("lightning_modules", "datamodules", "callbacks", "evaluation", "experiments")
# This repository's own modules: its packages, and the tests' own (tests/ is on sys.path: conftest, support/).
LOCAL = (
    {p.parent.name for p in REPO.glob("*/__init__.py")}
    | {p.stem for p in REPO.glob("tests/*.py")}
    | {"support"}
)
# Declared but never imported, on purpose.
NOT_IMPORTED = {
    "setuptools": "the build backend of `make setup`'s editable mdp install (--no-build-isolation)",
    "tensorboard": "torch.utils.tensorboard writes through it; `make tb` runs its CLI",
    "pytest-timeout": "a pytest plugin (pyproject's `timeout`)",
    "pytest-xdist": "a pytest plugin (`make test` runs the suite on two processes: -n)",
    "ruff": "a command-line tool (`make lint`)",
    "num2words": "SmolVLM / Idefics3's processor imports it when it is built (make eval MODEL=<smolvlm folder>)",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonical(re.split(r"[\s<>=!~;\[(@]", line, maxsplit=1)[0]))
    return names


def is_require(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def imported_distributions(folders: list[Path]) -> dict[str, set[str]]:
    """Distribution -> files importing it, over every import (lazy ones inside functions included)."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else [folder]:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                elif is_require(node):  # mdp's optional imports: require("open_clip", backbone=...)
                    modules = [node.args[0].value]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in LOCAL or top == "__future__":
                        continue
                    assert top in owners, (
                        f"{path.relative_to(REPO)} imports {top}, which no installed package provides"
                    )
                    for dist in owners[top]:
                        found.setdefault(canonical(dist), set()).add(str(path.relative_to(REPO)))
    return found


def declared() -> dict[str, set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {name: requirement_names(reqs) for name, reqs in project["optional-dependencies"].items()}
    return {
        "mdp": requirement_names(project["dependencies"]).union(*extras.values()) - {"m3diff-mdp"},
        "kit": requirement_names((REPO / "requirements.txt").read_text().splitlines()),
        "dev": requirement_names((REPO / "requirements-dev.txt").read_text().splitlines()),
    }


def test_everything_imported_is_declared():
    want = declared()
    for scope, folders, allowed in [
        ("mdp (pyproject)", [REPO / "mdp"], want["mdp"]),
        # The kit installs mdp with --no-deps, so what mdp imports is the kit's to declare too.
        ("the kit (requirements.txt)", [REPO / "mdp", *(REPO / f for f in KIT)], want["kit"]),
        ("tests (requirements.txt + requirements-dev.txt)", [REPO / "tests"], want["kit"] | want["dev"]),
    ]:
        missing = {
            d: sorted(files)[:3] for d, files in imported_distributions(folders).items() if d not in allowed
        }
        assert not missing, f"imported by {scope} but not declared there: {missing}"


def test_nothing_declared_is_unused():
    want = declared()
    used_by_mdp = set(imported_distributions([REPO / "mdp"]))
    used_by_kit = set(imported_distributions([REPO / "mdp", *(REPO / f for f in KIT)]))
    used_by_tests = set(imported_distributions([REPO / "tests"]))
    exempt = {canonical(n) for n in NOT_IMPORTED}
    assert want["mdp"] - used_by_mdp == set(), "pyproject declares what mdp never imports"
    assert want["kit"] - used_by_kit - exempt == set(), "requirements.txt declares what the kit never imports"
    assert want["dev"] - used_by_tests - exempt == set(), "requirements-dev.txt declares what no test imports"


def test_the_lock_pins_every_declared_package():
    lock = {
        canonical(line.split("==")[0]): line.split("==")[1]
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    want = declared()
    unpinned = (want["mdp"] | want["kit"] | want["dev"]) - set(lock)
    assert not unpinned, f"declared but not pinned in requirements.lock: {sorted(unpinned)}"
