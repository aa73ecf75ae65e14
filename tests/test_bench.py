"""`make bench` (experiments/bench/) works: every section runs at toy sizes and the JSON has its keys; the
rig's step is Lightning's step.

No timing is asserted: the numbers of a --quick run mean nothing (and machines differ).
"""

from __future__ import annotations

import json

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from experiments.bench import cli, mdp_base, measure, report, score
from experiments.bench.rig import build_rig, caption_tokenizer
from experiments.common.config import load_config
from experiments.common.flops import flop_counter

SECTION_KEYS = {
    "peak": {"gflops", "samples", "threads", "loadavg_1m"},
    "train": {
        "pairs_per_s",
        "step_s",
        "gflop_per_pair",
        "gflops",
        "peak_gflops",
        "fraction_of_peak",
        "fraction_of_peak_paired",
        "mdp_tiny",
        "loadavg_1m",
    },
    "mdp_base": {"step_on_s", "step_off_s", "overhead", "overhead_paired", "flop_share", "mdp_alone_share"},
    "generate": {
        "cached_captions_per_s",
        "uncached_captions_per_s",
        "speedup",
        "identical",
        "generated_lengths",
    },
    "score": {"pairs", "subsets"},
    "data": {"per_worker_pairs_per_s", "workers", "consumption_pairs_per_s", "ratio"},
}


def test_quick_run_writes_every_section(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # One thread: on a shared machine, two threads' barriers make toy-sized steps crawl.
    assert cli.main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["quick"] is True
    assert {"machine", "targets", "table", "loadavg_1m", "wall_s"} <= set(results)
    for section, keys in SECTION_KEYS.items():
        assert keys <= set(results[section]), (section, keys - set(results[section]))
    tiny = results["train"]["mdp_tiny"]
    assert {"overhead", "where_time_goes", "profile_top_ops"} <= set(tiny)
    parts = {row["part"] for row in tiny["where_time_goes"]}
    assert {"whole step", "backbone", "mdp", "lm", "projector", "optimizer step"} <= parts
    assert "threads" in results  # one thread configured here: compared only when there are more
    assert results["train"]["gflop_per_pair"] > 0
    # Greedy decoding with and without the KV cache gives the same tokens, of the forced length.
    generate = results["generate"]
    assert generate["identical"] is True
    assert generate["generated_lengths"] == [generate["new_tokens"]]
    # The full run's path: captions longer than the data's longest (which sizes a tiny LM's position table).
    assert generate["new_tokens"] == cli.GENERATE_TOKENS[True] > generate["data_caption_tokens"]
    # The full run's base-scale model (backbone, its weights setting), at toy sizes.
    assert results["mdp_base"]["overrides"] == [*mdp_base.BASE_OVERRIDES, *mdp_base.QUICK_BASE_OVERRIDES]
    score = results["score"]
    if "skipped" not in score:  # needs Java
        assert {"scorer_s", "naive_s", "naive_extrapolated", "speedup"} <= set(score)
        assert score["max_abs_diff_vs_naive"] < 1e-9  # the kit's scorer reproduces pycocoevalcap
    assert set(results["targets"]) == set(report.TARGETS)
    assert "M3Diff kit bench" in capsys.readouterr().out


def test_unknown_section_is_an_error(capsys):
    assert cli.main(["--sections", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown sections" in err[0]


def test_flop_counter_counts_cpu_attention():
    q = torch.randn(2, 4, 16, 8, requires_grad=True)
    counter = flop_counter()
    with counter:
        F.scaled_dot_product_attention(q, q, q).sum().backward()
    # forward 2 bmm (4 * b*h * s*s*d) + backward 5 bmm (10 * b*h * s*s*d) as torch counts SDPA
    assert counter.get_total_flops() == 14 * 2 * 4 * 16 * 16 * 8


def test_interleave_alternates_order():
    calls: list[str] = []
    times = measure.interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_scoring_set_has_clevr_change_test_shape():
    refs, preds, subsets = score.clevr_change_sized_set(200)
    assert len(preds) == 400 and set(refs) == set(preds)
    assert all(5 <= len(r) <= 7 for r in refs.values())
    cats = subsets["categories"]
    assert set(cats) == {*score.CHANGE_CATEGORIES, score.NO_CHANGE}
    assert 150 < len(cats[score.NO_CHANGE]) < 250  # half the pairs, in expectation
    semantic = subsets["groups"]["semantic"]
    assert sorted(semantic) == sorted(p for c in score.CHANGE_CATEGORIES for p in cats[c])
    assert len(semantic) + len(cats[score.NO_CHANGE]) == 400


def test_rig_step_is_lightnings_step():
    """Two rig steps leave the same weights as two steps of Trainer.fit on the same batches (same hooks:
    zero_grad, training_step, backward, gradient clipping, AdamW, LR schedule)."""
    overrides = [*cli.QUICK_OVERRIDES, "trainer.max_steps=2", "trainer.gradient_clip_val=0.01"]
    tokenizer = caption_tokenizer(load_config(overrides=overrides))
    rig, fitted = (build_rig(name, overrides, tokenizer, n_batches=2) for name in ("rig", "fit"))
    for batch in rig.batches + fitted.batches:
        # One reference per pair: training_step picks one by global_step, which only Trainer.fit advances.
        batch["captions"] = [refs[:1] for refs in batch["captions"]]
    start = {k: p.detach().clone() for k, p in rig.module.named_parameters()}
    torch.manual_seed(0)
    rig.step()
    rig.step()
    fitted.module.trainer = None
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=2, gradient_clip_val=0.01, barebones=True)
    torch.manual_seed(0)
    trainer.fit(fitted.module, train_dataloaders=DataLoader(fitted.batches, batch_size=None))
    stepped = dict(fitted.module.named_parameters())
    moved = [name for name, p in rig.module.named_parameters() if not torch.equal(p, start[name])]
    assert len(moved) > 10
    for name, param in rig.module.named_parameters():
        torch.testing.assert_close(param, stepped[name], rtol=0, atol=0, msg=name)


def test_naive_cost_fit():
    fixed, per_pair = score.fit_cost([("a", 100, 3.0), ("b", 1100, 13.0)])
    assert abs(fixed - 2.0) < 1e-9 and abs(per_pair - 0.01) < 1e-12


def test_naive_order_measures_two_sizes_first():
    jobs = [
        ("overall", list("abcdefgh")),
        ("small", list("ab")),
        ("mid", list("abcd")),
        ("big", list("abcdef")),
    ]
    assert [label for label, _ in score.naive_order(jobs)] == ["small", "big", "mid", "overall"]


def test_full_size_sections_build_what_they_measure():
    """What `make bench` (no --quick) adds to the --quick paths: the base-scale backbone at 224 px, randomly
    initialised (it inherited the default backbone's tiny weights file and open_clip refused it), and 80-token
    captions, longer than the default data's (19 tokens with the default tokenizer)."""
    from experiments.common.config import to_container
    from lightning_modules.model.build import build_backbone

    cfg = load_config(overrides=list(mdp_base.BASE_OVERRIDES))
    assert cfg.backbone.pretrained is None and cfg.backbone.image_size == 224
    backbone = build_backbone(to_container(cfg))
    assert backbone.spec.size == 224 and backbone.width == 768
    assert cli.GENERATE_TOKENS[False] == 80
