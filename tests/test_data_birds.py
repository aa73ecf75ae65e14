"""Birds-to-Words: the released tsv (header, eleven columns, one row per description), pairs merged by photo ids,
stable evaluation ids, the local image naming rule, and `make data-info` with and without images."""

from __future__ import annotations

import json

import pytest
from support.data import make_dm
from support.records import BIRDS_COLUMNS, birds_row, make_birds

from datamodules.birds_to_words import COLUMNS
from datamodules.contract import check_sample
from datamodules.errors import DataError
from experiments import data_info


def test_columns_are_the_released_eleven():
    assert list(COLUMNS) == BIRDS_COLUMNS and len(COLUMNS) == 11


def test_rows_of_a_pair_merge_in_file_order_with_ids_from_photo_ids(tmp_path):
    mini = make_birds(tmp_path / "b2w")
    dm = make_dm("birds_to_words", mini.root)
    train = {r.pair_id: r for r in dm.records("train")}
    assert list(train) == ["647514_5595152", "1211_98765"]
    pair = train["647514_5595152"]
    assert len(pair.captions) == 5
    assert pair.captions[2] == 'animal1 has a "speckled" breast , animal2 a brown one .'  # CSV quoting undone
    assert train["1211_98765"].captions[1] == 'animal2 has a "turquoise" head patch .'  # kept as written
    assert pair.before.endswith("images/647514.jpg") and pair.after.endswith("images/5595152.jpg")
    assert train["1211_98765"].after.endswith("images/98765.png")  # other extensions are found
    assert dm.reference_captions("val") == {
        "3003_4004": ["animal1 has a longer beak .", "animal2 is darker overall ."]
    }
    # The order of the two images matters: (7007, 5005) is another pair than (5005, 6006).
    assert list(dm.reference_captions("test")) == ["5005_6006", "7007_5005"]


def test_evaluation_ids_do_not_depend_on_row_order(tmp_path):
    mini = make_birds(tmp_path / "b2w")
    before = make_dm("birds_to_words", mini.root).reference_captions("test")
    tsv = mini.root / "birds-to-words-v1.0.tsv"
    header, *rows = tsv.read_text().splitlines()
    tsv.write_text("\n".join([header, *reversed(rows)]) + "\n")
    after = make_dm("birds_to_words", mini.root).reference_captions("test")
    assert set(after) == set(before)
    assert {k: sorted(v) for k, v in after.items()} == {k: sorted(v) for k, v in before.items()}


def test_samples_meet_the_contract(tmp_path):
    mini = make_birds(tmp_path / "b2w")
    dm = make_dm("birds_to_words", mini.root)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["before"].shape[1:] == (3, 16, 16)
    for split in ("train", "val"):
        dataset = dm.dataset(split)
        for i in range(len(dataset)):
            check_sample(dataset[i], where=f"birds_to_words {split} {i}")


def test_missing_images_are_named_with_the_expected_file(tmp_path, capsys):
    mini = make_birds(tmp_path / "b2w")
    (mini.root / "images" / "6006.jpg").unlink()
    (mini.root / "images" / "7007.jpg").unlink()
    code = data_info.main(["--data", "birds_to_words", "--root", str(mini.root), "--json", "1"])
    info = json.loads(capsys.readouterr().out)
    assert code == 1
    test = info["splits"]["test"]
    assert (test["pairs"], test["references"], test["missing_images"]) == (2, 4, 2)
    assert info["splits"]["train"]["missing_images"] == 0
    listed = " ".join(test["problems"])
    assert "images/6006.jpg: pair '5005_6006'" in listed and "images/7007.jpg: pair '7007_5005'" in listed
    assert listed.count("image file not found") == 2


def test_data_info_without_images(tmp_path, capsys):
    mini = make_birds(tmp_path / "b2w")
    for image in (mini.root / "images").iterdir():
        image.unlink()
    argv = ["--data", "birds_to_words", "--root", str(mini.root), "--json", "1"]
    code = data_info.main([*argv, "--args", "--check-images=none"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["problems"] == []
    counts = {s: (r["pairs"], r["references"], r["missing_images"]) for s, r in info["splits"].items()}
    assert counts == {"train": (2, 7, None), "val": (1, 2, None), "test": (2, 4, None)}
    code = data_info.main([*argv, "--args", "--check-images=exists"])
    info = json.loads(capsys.readouterr().out)
    assert code == 1 and info["missing_images"] == 4 + 2 + 3  # every photo once (5005 is in two test pairs)
    code = data_info.main(
        ["--data", "birds_to_words", "--root", str(mini.root), "--args", "--check-images=none"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "missing images" in out and "not checked" in out


def test_bad_rows_name_file_and_line(tmp_path):
    mini = make_birds(tmp_path / "b2w")
    tsv = mini.root / "birds-to-words-v1.0.tsv"
    good = tsv.read_text()
    tsv.write_text(good + "only\tthree\tfields\n")
    with pytest.raises(
        DataError, match=r"birds-to-words-v1.0.tsv: line 15: 3 tab-separated fields, expected 11"
    ):
        make_dm("birds_to_words", mini.root).records("train")
    tsv.write_text(good + birds_row(1, 2, "dev", 1, "x") + "\n")
    with pytest.raises(DataError, match=r"line 15: column 'split' must be one of \['train', 'val', 'test'\]"):
        make_dm("birds_to_words", mini.root).records("train")
    tsv.write_text(good + birds_row(1, 2, "train", 1, "x").replace("/photos/1", "/pics/1") + "\n")
    with pytest.raises(DataError, match=r"line 15: no iNaturalist photo id .* in img1ImgURL"):
        make_dm("birds_to_words", mini.root).records("train")
    tsv.write_text(good + birds_row(1, 2, "train", 1, "x").replace("\ttrain\t1\t", "\ttrain\tone\t") + "\n")
    with pytest.raises(DataError, match=r"line 15: column 'annN' must be a whole number, got 'one'"):
        make_dm("birds_to_words", mini.root).records("train")
    dm = make_dm("birds_to_words", mini.root, on_error="skip")
    assert [r.pair_id for r in dm.records("train")] == ["647514_5595152", "1211_98765"]
    assert dm.skipped["train"] == 1


def test_header_and_missing_file_are_file_level_errors(tmp_path):
    mini = make_birds(tmp_path / "b2w")
    tsv = mini.root / "birds-to-words-v1.0.tsv"
    lines = tsv.read_text().splitlines()
    tsv.write_text("\n".join([lines[0].replace("annN", "ann"), *lines[1:]]) + "\n")
    with pytest.raises(
        DataError, match=r"line 1: not the Birds-to-Words header: column\(s\) \['annN'\] missing"
    ):
        make_dm("birds_to_words", mini.root, on_error="skip").records("train")
    tsv.unlink()
    with pytest.raises(DataError, match="birds-to-words-v1.0.tsv: annotation file not found"):
        make_dm("birds_to_words", mini.root).records("test")


def test_a_row_repeated_verbatim_is_one_reference_and_a_data_info_problem(tmp_path, capsys):
    """Issue 22, loss 5: a repeated row became a second, identical reference of the pair."""
    mini = make_birds(tmp_path / "b2w")
    tsv = mini.root / "birds-to-words-v1.0.tsv"
    lines = tsv.read_text().splitlines()
    repeated = next(i for i, line in enumerate(lines) if "animal2 has white wing bars" in line)
    tsv.write_text("\n".join([*lines, lines[repeated]]) + "\n")
    dm = make_dm("birds_to_words", mini.root)
    refs = dm.reference_captions("test")["5005_6006"]
    assert refs.count("animal2 has white wing bars .") == 1 and len(refs) == 3
    code = data_info.main(["--data", "birds_to_words", "--root", str(mini.root), "--json", "1"])
    info = json.loads(capsys.readouterr().out)
    assert code == 1 and info["splits"]["test"]["references"] == 4  # counted once
    assert info["problems"] == [
        f"{tsv}: line {len(lines) + 1}: repeats line {repeated + 1} verbatim; read once"
    ]
