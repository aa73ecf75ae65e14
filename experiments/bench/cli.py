"""``make bench`` / ``python -m experiments.bench``: run the sections, write the JSON, print the table.

make bench [ARGS="key=value ..."] [OUT=bench_results/bench.json]
python -m experiments.bench [--quick] [--sections peak,train,threads,...] [--threads N] [--out PATH] [--args "k=v ..."]
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.bench.data import section_data
from experiments.bench.generate import section_generate
from experiments.bench.mdp_base import BASE_OVERRIDES, QUICK_BASE_OVERRIDES, section_mdp_base
from experiments.bench.measure import MatmulPeak, conditions, machine, section_peak
from experiments.bench.report import check_targets, render_table
from experiments.bench.rig import Rig, build_rig, caption_tokenizer
from experiments.bench.score import section_score
from experiments.bench.threads import section_threads
from experiments.bench.train import section_train
from experiments.common import cli
from experiments.common.config import experiment_overrides

DEFAULT_OUT = Path("bench_results") / "bench.json"
SECTIONS = ("peak", "train", "threads", "mdp_base", "generate", "score", "data")
# Opt-in (not in the default run: compiling costs minutes of the 10-minute budget).
EXTRA_SECTIONS = ("compile",)
# --quick: the tiny model (experiments/tiny.yaml, as the tests and `make train EXP=tiny`), so every section runs in
# seconds.
QUICK_OVERRIDES = (*experiment_overrides("tiny"), "model.lm.tokenizer_captions=200", "data.batch_size=4")
# generate: new tokens per caption, full / --quick. Both are longer than the data's longest caption in tokens (19
# with the default tokenizer, 86 with --quick's 128-token vocabulary), so --quick takes the full run's path: a
# model whose position table is sized for them (generate_rig); tests/test_bench.py checks that it is longer.
GENERATE_TOKENS = {False: 80, True: 100}
MODEL_SECTIONS = ("train", "threads", "mdp_base", "generate", "data", "compile")

log = logging.getLogger("m3diff.bench")


def _default_model(
    results: dict[str, Any], user: list[str], sections: Sequence[str], tokenizer: str | None, quick: bool
) -> Rig | None:
    """``train`` (which also builds the default model's rig that generate and threads reuse)."""
    from experiments.common.config import load_config

    if "train" in sections or "data" in sections or "threads" in sections:
        log.info("train: default model, MDP on/off interleaved")
        peak = MatmulPeak(256 if quick else 2048, k=3 if quick else 5)
        results["train"], rig = section_train(
            user,
            tokenizer,
            peak,
            default_on=bool(load_config(overrides=user).mdp.enabled),
            repeats=2 if quick else 6,
            breakdown_repeats=1 if quick else 3,
        )
        return rig
    return None


def generate_rig(user: Sequence[str], tokenizer: str | None, tokens: int) -> Rig:
    """The default model with room for ``tokens`` generated tokens: a tiny LM's position table is sized by
    ``generation.max_new_tokens`` (the data's longest caption when null), and the bench generates longer captions
    than the data has. Only the table's length differs from ``make train``'s model."""
    return build_rig("generate", [*user, f"generation.max_new_tokens={tokens}"], tokenizer)


def _run_sections(results: dict[str, Any], user: list[str], sections: Sequence[str], quick: bool) -> None:
    from experiments.common.config import load_config

    if "peak" in sections:
        results["peak"] = section_peak(256 if quick else 2048, 3 if quick else 7)
    tokenizer = None
    if any(s in sections for s in MODEL_SECTIONS):
        started = time.perf_counter()
        tokenizer = caption_tokenizer(load_config(overrides=user))
        results["tokenizer_s"] = round(time.perf_counter() - started, 1)
    rig = _default_model(results, user, sections, tokenizer, quick)
    if "generate" in sections:
        log.info("generate: KV cache on/off")
        tokens = GENERATE_TOKENS[quick]
        results["generate"] = section_generate(
            generate_rig(user, tokenizer, tokens),
            tokens=tokens,
            batch=2 if quick else 8,
            repeats=2 if quick else 3,
        )
    if "mdp_base" in sections:
        log.info("mdp_base: base-scale model, MDP on/off")
        base = [*BASE_OVERRIDES, *(QUICK_BASE_OVERRIDES if quick else ())]
        results["mdp_base"] = section_mdp_base(user, base, tokenizer, batch_size=2, repeats=1 if quick else 4)
    if "score" in sections:
        log.info("score: CaptionScorer vs COCOEvalCap per subset")
        results["score"] = section_score(
            scenes=30 if quick else 3985, naive_budget_s=0.0 if quick else 60.0, meteor=not quick
        )
    if "threads" in sections and rig is not None:
        log.info("threads: the default step at 1 vs %d threads", torch.get_num_threads())
        results["threads"] = section_threads(rig, repeats=2 if quick else 3)
    if "compile" in sections:
        log.info("compile: torch.compile vs eager")
        from experiments.bench.compile import section_compile

        results["compile"] = section_compile(user, tokenizer, repeats=2 if quick else 4)
    if "data" in sections:
        consumption = results.get("train", {}).get("pairs_per_s")
        results["data"] = section_data(user, consumption, seconds=1.0 if quick else 4.0)


def run(*, user: Sequence[str], sections: Sequence[str], quick: bool, out_path: Path) -> dict[str, Any]:
    """Every requested section, into one results object written (atomically) to ``out_path``."""
    from evaluation import atomic_write_text

    user = [*(QUICK_OVERRIDES if quick else ()), *user]
    results: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "overrides": list(user),
        "quick": quick,
        "sections": list(sections),
        "machine": machine(),
    }
    with conditions(results):
        _run_sections(results, user, sections, quick)
    results["targets"] = check_targets(results)
    results["table"] = render_table(results)
    atomic_write_text(out_path, json.dumps(results, indent=1) + "\n")
    return results


def _parser() -> argparse.ArgumentParser:
    from experiments import bench

    parser = cli.parser(bench.__doc__.split("\n\n")[0], prog="python -m experiments.bench")
    parser.add_argument("--out", default="", help=f"JSON file to write (OUT=, default {DEFAULT_OUT})")
    parser.add_argument(
        "--args", default="", help='config overrides of the model benchmarked, "key=value ..." (ARGS=)'
    )
    parser.add_argument(
        "--sections",
        default="",
        help=f"comma-separated, from {','.join(SECTIONS + EXTRA_SECTIONS)} (default: all but {','.join(EXTRA_SECTIONS)})",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (default: torch's, = cores)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="toy sizes, seconds (tests); the numbers mean nothing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_parser(), command, argv, logging=False)


def command(ns: argparse.Namespace) -> None:
    sections = [s.strip() for s in ns.sections.split(",") if s.strip()] or list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS) - set(EXTRA_SECTIONS))
    if unknown:
        raise cli.UsageError(f"unknown sections {unknown}; choose from {list(SECTIONS + EXTRA_SECTIONS)}")
    user = cli.split_args(ns.args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("lightning", "lightning.pytorch", "transformers", "m3diff.scoring"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    threads = torch.get_num_threads()
    try:
        if ns.threads:
            torch.set_num_threads(ns.threads)
        with warnings.catch_warnings():
            # training_step's self.log() is off in the rig's barebones Trainer and warns once per call site.
            warnings.filterwarnings("ignore", message=".*self.log.*")
            results = run(user=user, sections=sections, quick=ns.quick, out_path=Path(ns.out or DEFAULT_OUT))
    finally:
        torch.set_num_threads(threads)
    print(results["table"])
    print(f"\nwrote {ns.out or DEFAULT_OUT}")
