"""Bad annotation files, clear errors: one test per bad input, run against every loader it applies to.

Under ``data.on_error=raise`` the error names the file and the record; under ``skip`` the record is dropped,
counted (``dm.skipped``) and a warning gives the count. A file nothing can be indexed from (missing, malformed,
not UTF-8) is fatal under both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.bad_input import ALL_LOADERS, LOADERS, assert_skipped, edit_json, mini_with_dm
from support.data import build_mini, make_dm
from support.files import write_image
from support.records import make_pairs

from datamodules.contract import check_sample
from datamodules.errors import DataError

MAIN_FILE = {  # the file whose loss makes the split unreadable
    "clevr_change": "splits.json",
    "clevr_dc": "split.json",
    "spot_the_diff": "annotations/test.json",
    "iedit": "test.json",
    "omnidiff": "test.json",
    "pairs": "pairs.json",
    "birds_to_words": "birds-to-words-v1.0.tsv",
    "llava": "test.json",
}


@pytest.mark.parametrize("name", ALL_LOADERS)
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_missing_annotation_file(tmp_path, name, on_error):
    mini, dm = mini_with_dm(tmp_path, name)
    (mini.root / MAIN_FILE[name]).unlink()
    with pytest.raises(DataError, match="not found") as err:
        dm(on_error=on_error).setup("test")  # fatal under both policies: nothing can be indexed
    assert MAIN_FILE[name].split("/")[-1].split(".")[0] in str(err.value)


@pytest.mark.parametrize("name", ["clevr_change", "clevr_dc"])
def test_missing_caption_file(tmp_path, name):
    mini, dm = mini_with_dm(tmp_path, name)
    caption_file = "change_captions.json" if name == "clevr_change" else "captions.json"
    (mini.root / caption_file).unlink()
    with pytest.raises(DataError, match="caption file not found") as err:
        dm(on_error="skip").records("test")
    assert caption_file in str(err.value)
    report = dm().inspect("test", check_images="none")  # data-info still counts the pairs
    assert report.pairs > 0 and report.references is None and caption_file in report.problems[0]


@pytest.mark.parametrize("name", [*LOADERS, "llava"])
def test_malformed_annotation_json(tmp_path, name):
    mini, dm = mini_with_dm(tmp_path, name)
    path = mini.root / MAIN_FILE[name]
    path.write_text('[\n  {"id": "a"},\n  {"id": "b",, "x": 1}\n]\n')
    with pytest.raises(DataError, match=r"malformed JSON at line 3, column 14") as err:
        dm().setup("test")
    assert str(path) in str(err.value)


def test_malformed_jsonl_line(tmp_path, caplog):
    mini = make_pairs(tmp_path / "pairs", jsonl=True)
    path = mini.root / "pairs.jsonl"
    lines = path.read_text().splitlines()
    lines[5] = lines[5][:-1]  # line 6: val_1, cut short
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl: line 6: malformed JSON at column"):
        make_dm("pairs", mini.root).records("test")  # a broken line has no readable split: any split fails
    dm = make_dm("pairs", mini.root, on_error="skip")
    assert [r.pair_id for r in dm.records("val")] == ["val_0"]
    assert dm.skipped["val"] == 1 and "dropped 1 record" in caplog.text


def first_test_index(records: list[dict]) -> int:
    return next(i for i, r in enumerate(records) if r.get("split", "test") == "test")


# name -> (file, edit, the record locator in the message, the message)
WRONG_TYPES: dict[str, tuple[str, Callable[[Any], None], str, str]] = {
    "clevr_change": (
        "splits.json",
        lambda d: d["test"].__setitem__(0, "11"),
        "'test' item 0",
        "non-negative integer",
    ),
    "clevr_dc": (
        "captions.json",
        lambda d: d.__setitem__("4", "it changed"),
        "key '4'",
        "must be a list of strings",
    ),
    "spot_the_diff": (
        "annotations/test.json",
        lambda d: d[1].__setitem__("img_id", 294),
        "record [1]",
        "field 'img_id' must be a string, got number 294",
    ),
    "iedit": (
        "test.json",
        lambda d: d[2].__setitem__("sents", "Crop it"),
        "record [2]",
        "'sents' must be a list",
    ),
    "omnidiff": (
        "test.json",
        lambda d: d[1].__setitem__("image_before", 5),
        "record [1]",
        "must be a string",
    ),
    "pairs": (
        "pairs.json",
        lambda d: d[first_test_index(d)].__setitem__("captions", ["ok", 3]),
        "record [6]",
        "field 'captions' item 1 must be a string, got number 3",
    ),
}


@pytest.mark.parametrize("name", LOADERS)
def test_wrong_field_types(tmp_path, caplog, name):
    mini, dm = mini_with_dm(tmp_path, name)
    file, change, where, message = WRONG_TYPES[name]
    edit_json(mini.root / file, change)
    with pytest.raises(DataError, match=message) as err:
        dm().records("test")
    assert f"{file.split('/')[-1]}: {where}" in str(err.value)
    skipping = dm(on_error="skip")
    assert len(skipping.records("test")) < len(
        make_dm(name, build_mini(name, tmp_path / "ok").root, **mini.overrides).records("test")
    )
    assert_skipped(skipping, caplog)


EMPTY_CAPTIONS: dict[str, tuple[str, Callable[[Any], None], str]] = {
    "clevr_change": (
        "change_captions.json",
        lambda d: d.__setitem__("CLEVR_default_000011.png", []),
        "key 'CLEVR_default_000011.png'",
    ),
    "clevr_dc": ("captions.json", lambda d: d.__setitem__("4", []), "key '4'"),
    "spot_the_diff": ("annotations/test.json", lambda d: d[1].__setitem__("sentences", []), "record [1]"),
    "iedit": ("test.json", lambda d: d[0].__setitem__("sents", []), "record [0]"),
    "omnidiff": ("test.json", lambda d: d[0].__setitem__("caption", []), "record [0]"),
    "pairs": ("pairs.json", lambda d: d[first_test_index(d)].__setitem__("captions", []), "record [6]"),
}


@pytest.mark.parametrize("name", LOADERS)
def test_empty_caption_list(tmp_path, caplog, name):
    mini, dm = mini_with_dm(tmp_path, name)
    file, change, where = EMPTY_CAPTIONS[name]
    edit_json(mini.root / file, change)
    with pytest.raises(DataError, match="empty caption list") as err:
        dm().records("test")
    assert f"{file.split('/')[-1]}: {where}" in str(err.value)
    skipping = dm(on_error="skip")
    skipping.records("test")
    assert_skipped(skipping, caplog)


NON_UTF8_FILE = {**MAIN_FILE, "clevr_change": "change_captions.json", "clevr_dc": "captions.json"}


@pytest.mark.parametrize("name", ALL_LOADERS)
def test_non_utf8_text(tmp_path, name):
    mini, dm = mini_with_dm(tmp_path, name)
    path = mini.root / NON_UTF8_FILE[name]
    raw = path.read_bytes()
    assert raw.count(b"\n") > 2
    lines = raw.split(b"\n")
    lines[2] = lines[2] + b" \xe9"  # a Latin-1 "é" at the end of line 3
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"not UTF-8 text: byte 0xe9 at line 3, column") as err:
        dm().records("test")
    assert str(path) in str(err.value)


def test_non_utf8_jsonl_line_is_one_bad_record(tmp_path, caplog):
    mini = make_pairs(tmp_path / "pairs", jsonl=True)
    path = mini.root / "pairs.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[6] = lines[6].replace(b"something changed", b"something chang\xe9d")  # line 7: test_0
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"pairs.jsonl: line 7: not UTF-8 text: byte 0xe9 at column"):
        make_dm("pairs", mini.root).records("test")
    dm = make_dm("pairs", mini.root, on_error="skip")
    assert [r.pair_id for r in dm.records("test")] == ["test_1", "test_2"]
    assert_skipped(dm, caplog)


DUPLICATES: dict[str, tuple[str, Callable[[Any], None], str]] = {
    "clevr_change": ("splits.json", lambda d: d["test"].append(0), "duplicate scene id 0"),
    "clevr_dc": ("split.json", lambda d: d["test"].append(4), "duplicate id 4"),
    "iedit": ("test.json", lambda d: d[2].__setitem__("uid", "Reddit_1052"), "duplicate uid 'Reddit_1052'"),
    "omnidiff": ("test.json", lambda d: d[2].__setitem__("id", "test_0"), "duplicate id 'test_0'"),
    "pairs": (
        "pairs.json",
        lambda d: d[first_test_index(d) + 1].__setitem__("id", "test_0"),
        "duplicate id 'test_0'",
    ),
}


@pytest.mark.parametrize("name", sorted(DUPLICATES))
def test_duplicate_ids(tmp_path, caplog, name):
    mini, dm = mini_with_dm(tmp_path, name)
    file, change, message = DUPLICATES[name]
    edit_json(mini.root / file, change)
    with pytest.raises(DataError, match=message):
        dm().records("test")
    skipping = dm(on_error="skip")
    ids = [r.pair_id for r in skipping.records("test")]
    assert len(ids) == len(set(ids))
    assert_skipped(skipping, caplog)


def test_repeated_spot_the_diff_ids_are_merged_not_errors(tmp_path):
    """Spot-the-Diff releases repeated img_ids on purpose (several annotators): merged, never an error."""
    mini, dm = mini_with_dm(tmp_path, "spot_the_diff")
    assert len(dm().reference_captions("test")["256.png"]) == 4


@pytest.mark.parametrize(
    ("name", "file", "key"),
    [
        ("clevr_change", "change_captions.json", "CLEVR_default_000011.png"),
        ("clevr_dc", "captions.json", "4"),
    ],
)
def test_ids_in_a_split_but_not_in_the_captions(tmp_path, caplog, name, file, key):
    mini, dm = mini_with_dm(tmp_path, name)
    edit_json(mini.root / file, lambda d: d.pop(key))
    with pytest.raises(DataError, match="has no captions") as err:
        dm().records("test")
    assert file in str(err.value)
    skipping = dm(on_error="skip")
    ids = [r.pair_id for r in skipping.records("test")]
    assert ("000011.png" if name == "clevr_change" else "000004.png") not in ids
    if name == "clevr_change":
        assert "000011.png_n" in ids  # its distractor pair has captions: kept
    assert_skipped(skipping, caplog)


# name -> (file, set the path field of the first test record to a value)
ESCAPES: dict[str, tuple[str, Callable[[Any, str], None]]] = {
    "spot_the_diff": (
        "annotations/test.json",
        lambda d, p: d[0].__setitem__("img_id", p.removesuffix(".png")),
    ),
    "iedit": ("test.json", lambda d, p: d[0].__setitem__("img0", p)),
    "omnidiff": ("test.json", lambda d, p: d[0].__setitem__("image_before", p)),
    "pairs": ("pairs.json", lambda d, p: d[first_test_index(d)].__setitem__("before", p)),
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_path_escaping_the_root_is_rejected(tmp_path, caplog, name, how):
    mini, dm = mini_with_dm(tmp_path, name)
    outside = write_image(tmp_path / "outside" / "secret.png")
    file, change = ESCAPES[name]
    folder = {"spot_the_diff": "resized_images", "iedit": "images"}.get(name, "")
    depth = len(Path(folder).parts)
    if how == "dotdot":
        value = "../" * (depth + 2) + "outside/secret.png"
    elif how == "absolute":
        value = str(outside)
    else:
        (mini.root / folder / "link.png").symlink_to(outside)
        value = "link.png"
    edit_json(mini.root / file, lambda d: change(d, value))
    with pytest.raises(DataError, match="escapes the dataset folder|is absolute") as err:
        dm().records("test")
    assert file.split("/")[-1] in str(err.value) and "record [" in str(err.value)
    skipping = dm(on_error="skip")
    assert all(str(outside) not in r.files for r in skipping.records("test"))
    assert_skipped(skipping, caplog)


def test_a_symlinked_image_folder_chosen_by_the_user_is_fine(tmp_path):
    mini, dm = mini_with_dm(tmp_path, "iedit")
    elsewhere = tmp_path / "big-disk" / "images"
    elsewhere.parent.mkdir()
    os.replace(mini.root / "images", elsewhere)
    (mini.root / "images").symlink_to(elsewhere)
    dataset = dm().dataset("test")
    check_sample(dataset[0])
