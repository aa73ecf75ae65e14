"""Files a person can read in one sitting: no Python file of the repository over 400 lines, no function over 60.

The limits are the house rule (docs/development.md); a file or function that outgrows them is split by meaning,
not trimmed to fit."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
SKIP = {".venv", ".git", "logs", "build", "dist"}


def python_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.py") if not SKIP & set(p.relative_to(REPO).parts))


def test_no_file_over_the_limit():
    long = {
        str(p.relative_to(REPO)): n
        for p in python_files()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_the_limit():
    long = {}
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
