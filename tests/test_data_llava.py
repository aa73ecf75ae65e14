"""DATA=llava: LLaVA-style multi-image instruction JSON. Records of the same two images are one evaluation pair;
each record is a training sample carrying its instruction; bad records are named; `make train` trains on it."""

from __future__ import annotations

import json
import logging

import pytest
from support.data import make_dm
from support.files import write_json
from support.records import LLAVA, LONG_CAPTION, llava_record, make_llava
from support.tiny import TINY_MODEL

from datamodules.contract import check_sample, collate_pairs
from datamodules.errors import DataError, MissingFile
from datamodules.llava import instruction_text
from experiments import data_info


def test_records_of_the_same_images_merge_into_one_evaluation_pair(tmp_path):
    mini = make_llava(tmp_path / "llava")
    dm = make_dm("llava", mini.root)
    assert dm.reference_captions("train") == {
        "omni_1": ["the mug is gone", LONG_CAPTION],
        "omni_2": ["the lamp is now on"],
        "4": ["a chair was added"],  # a numeric id is read as text
    }
    assert dm.reference_captions("test") == {
        "omni_t1": ["the car is red now", "the car was repainted"],
        "omni_t2": ["two birds flew away"],
    }
    (pair, *_) = dm.records("val")
    assert pair.pair_id == "omni_v1" and pair.instructions == ("What changed?", "Describe it.")
    dm.setup("test")
    sample = dm.dataset("test")[0]
    check_sample(sample)
    assert sample["captions"] == ["the car is red now", "the car was repainted"]
    assert sample["instruction"] == "What changed?"  # the first record's


def test_each_record_is_a_training_sample_with_its_instruction(tmp_path):
    mini = make_llava(tmp_path / "llava")
    dm = make_dm("llava", mini.root)
    dm.setup("fit")
    train = dm.dataset("train")
    samples = [train.get(i) for i in range(len(train))]
    assert len(samples) == len(LLAVA["train"]) == 4
    got = sorted((s["instruction"], s["captions"][0]) for s in samples)
    assert got == sorted(
        [
            ("Describe the difference.", "the mug is gone"),
            ("What is different?", LONG_CAPTION),
            ("What changed?", "the lamp is now on"),
            ("Compare the two images.", "a chair was added"),
        ]
    )
    for sample in samples:
        check_sample(sample)
    batch = collate_pairs(samples)
    assert batch["instruction"] == [s["instruction"] for s in samples]
    # sample_per=pair: one sample per merged pair (a reference drawn per step), with its first instruction
    by_pair = make_dm("llava", mini.root, sample_per="pair")
    by_pair.setup("fit")
    assert len(by_pair.dataset("train")) == 3


def test_instruction_text_drops_the_placeholders():
    assert instruction_text("<image>\n<image>\nWhat changed?") == "What changed?"
    assert instruction_text("Compare <image> and <image> . Go") == "Compare and . Go"
    assert instruction_text("<image><image>") == ""


def test_batches_without_instructions_have_no_instruction_key(tmp_path):
    mini = make_llava(tmp_path / "llava")
    records = [llava_record("a", ["scenes/1_a.jpg", "scenes/1_b.jpg"], "", "the mug is gone")]
    write_json(mini.root / "plain.json", records)
    dm = make_dm("llava", mini.root, annotations="plain.json")
    sample = dm.dataset("train")[0]
    assert "instruction" not in sample and "instruction" not in collate_pairs([sample])
    withone = make_dm("llava", mini.root).dataset("test")[0]
    assert collate_pairs([sample, withone])["instruction"] == [None, "What changed?"]


def test_one_file_without_split_in_its_name(tmp_path):
    mini = make_llava(tmp_path / "llava")
    write_json(mini.root / "m3diff_train.json", LLAVA["train"] + LLAVA["val"])
    dm = make_dm("llava", mini.root, annotations="m3diff_train.json")
    assert len(dm.records("train")) == 4
    with pytest.raises(
        MissingFile, match="no 'val' split: data.annotations='m3diff_train.json' holds the 'train'"
    ):
        dm.records("val")
    (mini.root / "test.json").unlink()
    with pytest.raises(MissingFile, match=r"test.json: annotation file of split 'test' not found"):
        make_dm("llava", mini.root).records("test")


BAD = {
    "one image": ({"image": ["scenes/1_a.jpg"]}, r"field 'image' has 1 image\(s\); expected two"),
    "three images": ({"image": ["a.jpg", "b.jpg", "c.jpg"]}, r"has 3 image\(s\); expected two"),
    "a string": ({"image": "scenes/1_a.jpg"}, "field 'image' is one image path; expected a list of two"),
    "no gpt turn": (
        {"conversations": [{"from": "human", "value": "<image>\n<image>\nWhat?"}]},
        "no gpt turn after the human turn",
    ),
    "one placeholder": (
        {"conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]},
        "the human turn has 1 '<image>' placeholder",
    ),
    "three placeholders": (
        {"conversations": [{"from": "human", "value": "<image>" * 3}, {"from": "gpt", "value": "x"}]},
        "the human turn has 3 '<image>' placeholder",
    ),
    "dotdot": (
        {"image": ["../outside.jpg", "scenes/1_b.jpg"]},
        "field 'image': path '../outside.jpg' escapes",
    ),
    "absolute": ({"image": ["/etc/passwd", "scenes/1_b.jpg"]}, "path '/etc/passwd' is absolute"),
    "two exchanges": (
        {"conversations": [*LLAVA["val"][0]["conversations"]] * 2},
        "4 turns; one human -> gpt exchange per record",
    ),
    "empty caption": (
        {"conversations": [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": " "}]},
        "the gpt turn is empty",
    ),
    "unknown role": (
        {"conversations": [{"from": "bot", "value": "<image><image>"}, {"from": "gpt", "value": "x"}]},
        r"unknown role\(s\) \['bot'\]",
    ),
    "no id": ({"id": None}, "field 'id'"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_records_name_file_and_record(tmp_path, caplog, kind):
    mini = make_llava(tmp_path / "llava")
    change, message = BAD[kind]
    records = json.loads((mini.root / "test.json").read_text())
    records[1].update(change)
    if change.get("id", 0) is None:
        del records[1]["id"]
    write_json(mini.root / "test.json", records)
    with pytest.raises(DataError, match=message) as err:
        make_dm("llava", mini.root).records("test")
    assert "test.json: record [1]" in str(err.value)
    skipping = make_dm("llava", mini.root, on_error="skip")
    assert list(skipping.reference_captions("test")) == ["omni_t1"] and skipping.skipped["test"] == 1


def test_duplicate_ids(tmp_path):
    mini = make_llava(tmp_path / "llava")
    records = json.loads((mini.root / "test.json").read_text())
    records[2]["id"] = "omni_t1"
    write_json(mini.root / "test.json", records)
    with pytest.raises(DataError, match=r"record \[2\]: duplicate id 'omni_t1' \(first at record \[0\]\)"):
        make_dm("llava", mini.root).records("test")


def test_data_info_counts_merged_pairs_and_references(tmp_path, capsys):
    mini = make_llava(tmp_path / "llava")
    argv = ["--data", "llava", "--root", str(mini.root), "--split", "train", "--json", "1"]
    assert data_info.main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["pairs"], info["references"], info["missing_images"]) == (3, 4, 0)
    (mini.root / "scenes" / "1_b.jpg").unlink()
    assert data_info.main([*argv, "--args", "--check-images=none"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 3


@pytest.mark.slow
def test_make_train_on_an_instruction_file(tmp_path, caplog):
    from experiments import train

    mini = make_llava(tmp_path / "llava")
    overrides = [
        *TINY_MODEL,
        f"logs_dir={tmp_path / 'logs'}",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "data.num_workers=0",
        "model.lm.tokenizer_captions=50",
        "generation.max_new_tokens=6",
        "trainer.max_steps=4",
        "trainer.enable_progress_bar=false",
        "metrics.change_id=false",
    ]
    argv = ["--data", "llava", "--root", str(mini.root), "--args", " ".join(overrides)]
    with caplog.at_level(logging.INFO, logger="m3diff.train"):
        assert train.main(argv) == 0
    # Four records = four training samples (one per caption) = two batches of two; one optimizer step each.
    assert (
        "one epoch = 4 training samples (one per reference caption) = 2 optimizer steps of 2 samples"
        in caplog.text
    )
    (run,) = (tmp_path / "logs").glob("default/*/version_0")
    metrics = json.loads((run / "final_metrics.json").read_text())
    assert metrics["val/num_pairs"] == 1.0 and "val/CIDEr" in metrics  # val: two records, one pair
    gt = json.loads(next(run.glob("eval/val-step*/gt.json")).read_text())
    assert [a["caption"] for a in gt["annotations"]] == ["the door is open", "someone opened the door"]
