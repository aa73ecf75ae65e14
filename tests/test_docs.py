"""The README and docs/ stay a short front page plus guides that work from this repository alone: the README's
length, no pointers outside the repository, links (and their #anchors) that resolve, `make` commands that name real
targets and variables, `python -m experiments.<x>` flags that exist, and a CITATION.cff that parses."""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 250
PAPER_TITLE = "OmniDiff: A Comprehensive Benchmark for Fine-grained Image Difference Captioning"
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
# A `make` command: the target, then its VAR=value words ("..." or '...' may hold spaces).
MAKE = re.compile(r"(?<![\w.-])make ([a-z][a-z-]*)((?: +[A-Z][A-Z_]*=(?:\"[^\"]*\"|'[^']*'|[^\s`]*))*)")
MAKE_VAR = re.compile(r"([A-Z][A-Z_]*)=")
ENTRY = re.compile(r"-m experiments\.(\w+)([^#`\n]*(?:\\\n[^#`\n]*)*)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _code(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where the pages show commands."""
    blocks = FENCE.findall(text)
    # ``...`` spans show backticks themselves, not commands
    prose = re.sub(r"``.*?``", "", FENCE.sub("", text), flags=re.S)
    return blocks + [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", _text(path))
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_readme_is_a_short_front_page():
    lines = _text(README).splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move details into docs/"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_no_pointer_outside_the_repository(path):
    text = _text(path)
    for needle in ("../shared", "DESIGN.md", "/work/"):
        assert needle not in text, f"{path.name} points outside the repository: {needle!r}"


def test_readme_links_every_guide_and_each_exists():
    linked = {target.split("#")[0] for target in LINK.findall(_text(README)) if target.startswith("docs/")}
    for target in linked:
        assert (REPO / target).is_file(), f"README links {target}, which does not exist"
    missing = {f"docs/{p.name}" for p in DOCS} - linked
    assert not missing, f"README does not link these guides: {sorted(missing)}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(path):
    for target in LINK.findall(_text(path)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: link {target} points at a missing file"
        assert REPO in linked.parents or linked == REPO, f"{path.name}: link {target} leaves the repository"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), (
                f"{path.name}: link {target}: no heading #{anchor} in {file_part}"
            )


def _makefile() -> tuple[set[str], set[str]]:
    text = _text(REPO / "Makefile")
    targets = set(re.findall(r"^([a-z][a-z-]*):", text, re.M))
    variables = set(re.search(r"^USER_VARS := (.+)$", text, re.M).group(1).split())
    return targets, variables | {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_make_commands_name_real_targets_and_variables(path):
    targets, variables = _makefile()
    seen = 0
    for code in _code(_text(path)):
        for target, assignments in MAKE.findall(code):
            seen += 1
            assert target in targets, f"{path.name}: `make {target}` is not a Makefile target"
            for var in MAKE_VAR.findall(assignments):
                assert var in variables, (
                    f"{path.name}: `make {target} {var}=...`: {var} is not a Makefile variable"
                )
    if path == README:
        assert seen > 10  # the parser found the README's commands


def _entry_sources(name: str) -> str:
    module = REPO / "experiments" / name
    files = (
        [module.with_suffix(".py")] if module.with_suffix(".py").is_file() else sorted(module.glob("*.py"))
    )
    assert files, f"python -m experiments.{name}: no such entry point"
    return "".join(_text(f) for f in [*files, REPO / "experiments" / "common" / "cli.py"])


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_entry_point_flags_exist(path):
    for code in _code(_text(path)):
        for name, rest in ENTRY.findall(code):
            source = _entry_sources(name)
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                assert f'"{flag}"' in source, f"{path.name}: python -m experiments.{name} has no {flag} flag"


def test_citation_cff_parses_and_names_the_paper():
    cff = yaml.safe_load(_text(REPO / "CITATION.cff"))
    assert cff["cff-version"] == "1.2.0"
    assert cff["title"].startswith("M3Diff kit") and cff["license"] == "MIT" and cff["authors"]
    paper = cff["preferred-citation"]
    assert paper["type"] == "conference-paper" and paper["year"] == 2025
    assert paper["title"] == PAPER_TITLE
    assert [a["family-names"] for a in paper["authors"]] == ["Liu", "Hou", "Hou", "Du", "Meng", "Huang"]
    assert "2503.11093" in _text(README) and "@inproceedings" in _text(README)
