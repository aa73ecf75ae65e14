"""The field's caption metrics (pycocoevalcap), computed once per evaluation and rescored per subset.

Plain python, no Lightning: :class:`CaptionScorer` is what the evaluation callback, ``make score`` and any
script use. It reproduces ``COCOEvalCap.evaluate()`` (PTB tokenizer, Bleu_1..4, METEOR 1.5, ROUGE_L, CIDEr,
optionally SPICE) number for number, but does the expensive parts once per evaluation instead of once per
subset:

* **one** PTB tokenizer call (one JVM) for every prediction and reference;
* **one** METEOR JVM (8 s to load its paraphrase table) per scorer object, reused across subsets and
  across calls until :meth:`CaptionScorer.close`; each pair's METEOR statistics line is computed once and the
  corpus score of a subset is one ``EVAL`` line over the cached statistics (what ``Meteor.compute_score`` sends);
* BLEU and CIDEr n-gram counts are cooked once per pair; ROUGE_L (and SPICE) are means of per-pair scores in
  pycocoevalcap, so they are computed once per pair and averaged per subset.

Subset scores are always *rescored* corpus scores (CIDEr's IDF and BLEU's brevity penalty come from the
subset itself), never means of the overall run's per-pair scores.

Without Java, BLEU / ROUGE_L / CIDEr are still computed on a documented regex approximation of the PTB
tokenizer (:func:`~evaluation.tokenization.fallback_tokenize`); the report says so (``tokenizer`` and
``notes``). Such numbers are not comparable with published ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.bleu.bleu_scorer import cook_refs as bleu_cook_refs
from pycocoevalcap.bleu.bleu_scorer import cook_test as bleu_cook_test
from pycocoevalcap.cider.cider_scorer import CiderScorer
from pycocoevalcap.cider.cider_scorer import cook_refs as cider_cook_refs
from pycocoevalcap.cider.cider_scorer import cook_test as cider_cook_test
from pycocoevalcap.rouge.rouge import Rouge

from evaluation.java import java_missing_reason, spice_missing_reason
from evaluation.meteor import MeteorProcess
from evaluation.report import FALLBACK, METRICS, PTB, ScoreReport
from evaluation.tokenization import fallback_tokenize, ptb_tokenize

log = logging.getLogger("m3diff.scoring")

#: From this many pairs on, a scorer with ``progress=True`` logs its phases (and how far a long one is every
#: ``PROGRESS_SECONDS``); smaller evaluations take seconds and say nothing. Plain lines, no bars: they stay
#: readable in a log file.
PROGRESS_PAIRS = 2000
PROGRESS_SECONDS = 10.0


class Job(NamedTuple):
    """One corpus score to compute: the overall one (``kind is None``) or a subset's."""

    kind: str | None
    name: str
    rows: list[int]  # indices of the scored pairs it holds


class Progress:
    """``label: done/total`` log lines for a long loop, at most one every :data:`PROGRESS_SECONDS`."""

    def __init__(self, label: str, total: int, *, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self._last = time.monotonic()

    def update(self, done: int) -> None:
        if self.enabled and time.monotonic() - self._last >= PROGRESS_SECONDS:
            self._last = time.monotonic()
            log.info("%s: %d/%d", self.label, done, self.total)


class CaptionScorer:
    """pycocoevalcap's metrics for one or many evaluations, with every subset rescored.

    Args:
        meteor: compute METEOR (one JVM, started on first use and kept until :meth:`close`).
        spice: compute SPICE, only if its CoreNLP models are already present (never downloads); otherwise
            the report carries ``"SPICE unavailable: <reason>"``.
        progress: log what it is doing when scoring :data:`PROGRESS_PAIRS` pairs or more.

    Use as a context manager, or call :meth:`close` (it stops the METEOR JVM). Pickling drops the JVM (a copy
    in another process starts its own when it first needs one).
    """

    def __init__(self, *, meteor: bool = True, spice: bool = False, progress: bool = True) -> None:
        self.meteor = meteor
        self.spice = spice
        self.progress = progress
        self._meteor: MeteorProcess | None = None
        self._java_reason: str | None | bool = False  # False = not checked yet
        self._warned: set[str] = set()
        self._verbose = False  # this call logs its phases (a large evaluation with progress on)

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the METEOR JVM if one is running (idempotent; the scorer restarts one when needed)."""
        if self._meteor is not None:
            self._meteor.close()
            self._meteor = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_meteor"] = None
        return state

    def __del__(self) -> None:
        self.close()

    # -------------------------------------------------------------- helpers
    @property
    def java_reason(self) -> str | None:
        """Why Java cannot be used (``None`` when it can); checked once per scorer."""
        if self._java_reason is False:
            self._java_reason = java_missing_reason()
        return self._java_reason  # type: ignore[return-value]

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)

    def _say(self, message: str, *args: Any) -> None:
        log.log(logging.INFO if self._verbose else logging.DEBUG, message, *args)

    def _meteor_process(self) -> MeteorProcess:
        if self._meteor is None or not self._meteor.alive:
            log.debug("starting METEOR (one JVM for this scorer)")
            self._meteor = MeteorProcess()
        return self._meteor

    # -------------------------------------------------------------- scoring
    def score(
        self,
        references: Mapping[str, Sequence[str]],
        predictions: Mapping[str, str],
        subsets: Mapping[str, Mapping[str, Collection[str]]] | None = None,
    ) -> ScoreReport:
        """Score ``predictions`` (pair id -> caption) against ``references`` (pair id -> captions).

        Only the ids in ``predictions`` are scored (the field's convention); each must have references.
        ``subsets`` maps a kind (``categories``, ``groups``, ``benchmarks``) to ``{name: pair ids}``; each
        subset is the intersection of its ids with the predictions and is rescored; empty ones are left out.
        """
        keys = check_inputs(references, predictions)
        jobs = make_jobs(keys, subsets)
        self._verbose = self.progress and len(keys) >= PROGRESS_PAIRS
        notes: list[str] = []
        use_java = self.java_reason is None
        # Start the JVM first: it loads its paraphrase table (~8 s) while we tokenize and count n-grams.
        meteor = self._start_meteor(use_java, notes)
        hyps, refs = self._tokenize(
            [predictions[k] for k in keys], [list(references[k]) for k in keys], use_java
        )
        meteor_stats = None
        if meteor is not None:  # statistics come from the JVM (the other core) while python does the rest
            pool = ThreadPoolExecutor(max_workers=1)
            meteor_stats = pool.submit(meteor.stats, hyps, refs)
            pool.shutdown(wait=False)
        scores: list[dict[str, float]] = [{} for _ in jobs]
        pair_scores: dict[str, list[float]] = {}
        self._score_ngrams(hyps, refs, jobs, scores, pair_scores)
        if meteor is not None and meteor_stats is not None:
            self._score_meteor(meteor, meteor_stats, jobs, scores, pair_scores, notes)
        if self.spice:
            self._score_spice(keys, hyps, refs, jobs, scores, pair_scores, notes, use_java)
        return build_report(keys, jobs, scores, pair_scores, notes, PTB if use_java else FALLBACK)

    def _start_meteor(self, use_java: bool, notes: list[str]) -> MeteorProcess | None:
        if not self.meteor:
            return None
        if not use_java:
            self._warn_once(
                f"Java unavailable ({self.java_reason}): METEOR/SPICE skipped, fallback tokenizer used"
            )
            notes.append(f"METEOR unavailable: {self.java_reason}")
            return None
        try:
            return self._meteor_process()
        except OSError as err:
            notes.append(f"METEOR failed: {err}")
            return None

    def _tokenize(
        self, hyps: list[str], refs: list[list[str]], use_java: bool
    ) -> tuple[list[str], list[list[str]]]:
        """Tokenize predictions and references together (one PTB call), then split them back."""
        flat = hyps + [r for rs in refs for r in rs]
        if use_java:
            self._say("PTB-tokenizing %d captions", len(flat))
            tok = ptb_tokenize(flat)
        else:
            tok = [fallback_tokenize(t) for t in flat]
        out_refs, pos = [], len(hyps)
        for rs in refs:
            out_refs.append(tok[pos : pos + len(rs)])
            pos += len(rs)
        return tok[: len(hyps)], out_refs

    def _score_ngrams(
        self,
        hyps: list[str],
        refs: list[list[str]],
        jobs: list[Job],
        scores: list[dict[str, float]],
        pair_scores: dict[str, list[float]],
    ) -> None:
        """BLEU, ROUGE_L and CIDEr of every job, as pycocoevalcap's scorers compute them.

        Each pair's n-grams are cooked once (pycocoevalcap's own cook functions) and handed to a fresh
        BleuScorer / CiderScorer per subset, so brevity penalty and IDF are those of the subset.
        ROUGE_L is pycocoevalcap's mean of per-pair scores: computed once per pair.
        """
        self._say("BLEU / ROUGE_L / CIDEr n-grams of %d pairs", len(hyps))
        progress = Progress("n-grams", len(hyps), enabled=self._verbose)
        bleu_cooked, cider_cooked, rouge = [], [], []
        rouge_scorer = Rouge()
        for i, (h, rs) in enumerate(zip(hyps, refs)):
            crefs = bleu_cook_refs(rs)
            bleu_cooked.append((crefs, bleu_cook_test(h, crefs)))
            cider_cooked.append((cider_cook_refs(rs), cider_cook_test(h)))
            rouge.append(rouge_scorer.calc_score([h], rs))
            progress.update(i + 1)
        pair_scores["ROUGE_L"] = rouge
        self._say("scoring %d subsets", len(jobs) - 1)
        progress = Progress("subsets", len(jobs), enabled=self._verbose)
        for i, (job, out) in enumerate(zip(jobs, scores)):
            bleu = BleuScorer(n=4)
            bleu.crefs = [bleu_cooked[r][0] for r in job.rows]
            bleu.ctest = [bleu_cooked[r][1] for r in job.rows]
            b, b_pairs = bleu.compute_score(option="closest", verbose=0)
            out.update({f"Bleu_{n + 1}": float(b[n]) for n in range(4)})
            out["ROUGE_L"] = float(np.mean([rouge[r] for r in job.rows]))
            cider = CiderScorer(n=4, sigma=6.0)
            cider.crefs = [cider_cooked[r][0] for r in job.rows]
            cider.ctest = [cider_cooked[r][1] for r in job.rows]
            c, c_pairs = cider.compute_score()
            out["CIDEr"] = float(c)
            if job.kind is None:  # the overall job comes first and holds every pair, in order
                pair_scores.update({f"Bleu_{n + 1}": b_pairs[n] for n in range(4)})
                pair_scores["CIDEr"] = list(c_pairs)
            progress.update(i + 1)

    def _score_meteor(
        self,
        meteor: MeteorProcess,
        stats: Future[list[str]],
        jobs: list[Job],
        scores: list[dict[str, float]],
        pair_scores: dict[str, list[float]],
        notes: list[str],
    ) -> None:
        """Each job's corpus METEOR from the pairs' statistics lines (one ``EVAL`` line per job)."""
        try:
            if not stats.done():
                self._say("waiting for the METEOR statistics of %d pairs", len(jobs[0].rows))
            lines = stats.result()
            for job, out in zip(jobs, scores):
                out["METEOR"], per_pair = meteor.corpus_score([lines[r] for r in job.rows])
                pair_scores.setdefault("METEOR", per_pair)
        except (OSError, RuntimeError) as err:
            self.close()
            notes.append(f"METEOR failed: {err}")
            self._warn_once(f"METEOR failed: {err}")
            for out in scores:
                out.pop("METEOR", None)

    def _score_spice(
        self,
        keys: list[str],
        hyps: list[str],
        refs: list[list[str]],
        jobs: list[Job],
        scores: list[dict[str, float]],
        pair_scores: dict[str, list[float]],
        notes: list[str],
        use_java: bool,
    ) -> None:
        """SPICE per pair, averaged per job (pycocoevalcap's SPICE is a mean), or a note saying why not."""
        reason = "Java unavailable" if not use_java else spice_missing_reason()
        if reason is None:
            try:
                spice = spice_per_pair(keys, hyps, refs)
                for job, out in zip(jobs, scores):
                    out["SPICE"] = float(np.mean([spice[r] for r in job.rows]))
                pair_scores["SPICE"] = spice
            except Exception as err:  # noqa: BLE001 - SPICE is optional: report, don't crash
                reason = f"SPICE failed: {err}"
        if reason is not None:
            notes.append(f"SPICE unavailable: {reason}")
            self._warn_once(f"SPICE unavailable: {reason}")


def check_inputs(references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> list[str]:
    """The ids to score (the predictions', in order), after checking that each has references."""
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    missing = [i for i in predictions if i not in references]
    if missing:
        raise KeyError(f"{len(missing)} predicted id(s) have no references, e.g. {missing[:5]}")
    empty = [i for i in predictions if not references[i]]
    if empty:
        raise ValueError(f"{len(empty)} pair(s) have an empty reference list, e.g. {empty[:5]}")
    return list(predictions)


def make_jobs(keys: list[str], subsets: Mapping[str, Mapping[str, Collection[str]]] | None) -> list[Job]:
    """The overall job (every pair, in order) first, then one per non-empty subset."""
    index = {k: n for n, k in enumerate(keys)}
    jobs = [Job(None, "overall", list(range(len(keys))))]
    for kind, named in (subsets or {}).items():
        for name, members in named.items():
            rows = sorted({index[m] for m in members if m in index})
            if rows:
                jobs.append(Job(kind, name, rows))
    return jobs


def build_report(
    keys: list[str],
    jobs: list[Job],
    scores: list[dict[str, float]],
    pair_scores: dict[str, list[float]],
    notes: list[str],
    tokenizer: str,
) -> ScoreReport:
    """The jobs' scores as a :class:`ScoreReport`, metrics in pycocoevalcap's order."""
    order = [*METRICS, "SPICE"]
    report = ScoreReport(
        overall={},
        tokenizer=tokenizer,
        notes=list(dict.fromkeys(notes)),  # one line per distinct problem
        num_pairs={"overall": len(keys)},
        per_pair={m: dict(zip(keys, map(float, v))) for m, v in pair_scores.items()},
    )
    for job, out in zip(jobs, scores):
        ordered = {m: out[m] for m in order if m in out}
        if job.kind is None:
            report.overall = ordered
        else:
            report.subsets.setdefault(job.kind, {})[job.name] = ordered
            report.num_pairs.setdefault(job.kind, {})[job.name] = len(job.rows)
    return report


def spice_per_pair(keys: list[str], hyps: list[str], refs: list[list[str]]) -> list[float]:
    """Per-pair SPICE F-scores (pycocoevalcap's SPICE is their mean, so subsets average them)."""
    from pycocoevalcap.spice.spice import Spice  # models checked present: no download happens

    log.info("computing SPICE (%d pairs)", len(keys))
    gts = {k: r for k, r in zip(keys, refs)}
    res = {k: [h] for k, h in zip(keys, hyps)}
    _, scores = Spice().compute_score(gts, res)
    by_id = dict(zip(sorted(keys), (s["All"]["f"] for s in scores)))
    return [float(by_id[k]) for k in keys]


def score_captions(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    subsets: Mapping[str, Mapping[str, Collection[str]]] | None = None,
    **scorer_kwargs: Any,
) -> ScoreReport:
    """One-shot :meth:`CaptionScorer.score` (starts and stops its own METEOR JVM)."""
    with CaptionScorer(**scorer_kwargs) as scorer:
        return scorer.score(references, predictions, subsets)
