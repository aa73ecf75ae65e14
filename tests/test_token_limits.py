"""Caption token limits follow the data: by default no training reference is cut and generation can finish the
longest one; a limit the user sets is kept and what it cuts is counted (start log, ``val/cut_captions``)."""

from __future__ import annotations

import logging

from support.tiny import TINY_MODEL

from experiments.common.config import load_config, to_container
from experiments.common.token_limits import caption_lengths, resolve_token_limits


class Words:
    """A whitespace tokenizer with the ``tokenizer(texts, add_special_tokens=False)`` call of HF tokenizers."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}


CAPTIONS = ["a b c", "a b c d e f g", "a"]


def test_null_limits_become_the_longest_reference_plus_its_end_token(caplog):
    config = to_container(load_config())
    assert config["model"]["max_caption_tokens"] is None and config["generation"]["max_new_tokens"] is None
    assert caption_lengths(Words(), CAPTIONS) == [4, 8, 2]
    with caplog.at_level(logging.INFO, logger="m3diff"):
        resolved = resolve_token_limits(config, Words(), CAPTIONS)
    assert resolved["model"]["max_caption_tokens"] == 8 and resolved["generation"]["max_new_tokens"] == 8
    assert config["model"]["max_caption_tokens"] is None  # the caller's config is left alone
    assert "cuts 0 of 3" in caplog.text


def test_a_limit_the_user_sets_is_kept_and_its_cuts_counted(caplog):
    config = to_container(
        load_config(overrides=["model.max_caption_tokens=4", "generation.max_new_tokens=5"])
    )
    with caplog.at_level(logging.INFO, logger="m3diff"):
        resolved = resolve_token_limits(config, Words(), CAPTIONS)
    assert resolved["model"]["max_caption_tokens"] == 4 and resolved["generation"]["max_new_tokens"] == 5
    assert "cuts 1 of 3" in caplog.text


def long_style(*overrides: str):
    from experiments.common import assembly

    cfg = load_config(
        overrides=[
            *TINY_MODEL,
            "data.caption_style=long",
            "data.num_workers=0",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "data.val_size=4",
            "model.lm.tokenizer_captions=200",
            *overrides,
        ]
    )
    parts = assembly.assemble(cfg)
    return parts.datamodule, parts.module


def test_long_captions_are_not_cut_in_training_by_default():
    datamodule, module = long_style()
    captions = datamodule.training_captions(200)
    longest = max(caption_lengths(module.tokenizer, captions))
    assert module.config["model"]["max_caption_tokens"] == longest > 48  # more than the old fixed limit
    assert module.config["generation"]["max_new_tokens"] == longest
    ids, mask = module.tokenize([max(captions, key=len)])
    assert ids.shape[1] == mask.sum() <= longest
    _, cut = long_style("model.max_caption_tokens=16")
    assert cut.tokenize(captions[:1])[0].shape[1] == 16


def test_cut_generations_are_counted_in_evaluation():
    datamodule, module = long_style("generation.max_new_tokens=3")
    datamodule.setup("validate")
    batch = next(iter(datamodule.val_dataloader()))
    module.evaluation_step(batch, "val")
    module.evaluation_step(batch, "val")  # the same pairs again (DDP padding repeats pairs): counted once
    # Counted on the generated token ids (decoding and re-tokenizing a caption may give another length).
    sequences, _ = module.model.generate(batch["before"], batch["after"], **module.config["generation"])
    assert module.cut_captions["val"].compute() == sum(len(s) >= 3 for s in sequences) > 0
