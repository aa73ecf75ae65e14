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
subset itself), never means of the overall run's per-pair scores (DESIGN.md §6).

Without Java, BLEU / ROUGE_L / CIDEr are still computed on a documented regex approximation of the PTB
tokenizer (:func:`fallback_tokenize`); the report says so (``tokenizer`` and ``notes``). Such numbers are not
comparable with published ones.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycocoevalcap
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.bleu.bleu_scorer import cook_refs as bleu_cook_refs
from pycocoevalcap.bleu.bleu_scorer import cook_test as bleu_cook_test
from pycocoevalcap.cider.cider_scorer import CiderScorer
from pycocoevalcap.cider.cider_scorer import cook_refs as cider_cook_refs
from pycocoevalcap.cider.cider_scorer import cook_test as cider_cook_test
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS
from tqdm.auto import tqdm

log = logging.getLogger("m3diff.scoring")

#: pycocoevalcap's metric names, in its order (SPICE is appended when it was computed).
METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
#: The kinds of subsets a report may hold, in table order.
SUBSET_KINDS: tuple[str, ...] = ("categories", "groups", "subsets", "benchmarks")
PTB = "ptb"
FALLBACK = "fallback-regex"

_PKG = Path(next(iter(pycocoevalcap.__path__)))  # a namespace package: no __file__
PTB_JAR = _PKG / "tokenizer" / "stanford-corenlp-3.4.1.jar"
METEOR_JAR = _PKG / "meteor" / "meteor-1.5.jar"
SPICE_MODELS = (
    _PKG / "spice" / "lib" / "stanford-corenlp-3.6.0.jar",
    _PKG / "spice" / "lib" / "stanford-corenlp-3.6.0-models.jar",
)
# Characters the PTB tokenizer treats as line ends: one inside a caption would shift every later line.
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\u2028\u2029]")


# ---------------------------------------------------------------------------------------------- environment
def java_missing_reason() -> str | None:
    """``None`` if a working ``java`` is on PATH, else why not (pycocoevalcap calls plain ``java``)."""
    exe = shutil.which("java")
    if exe is None:
        return "java not found on PATH (install a JRE 8+, e.g. openjdk-17-jre-headless)"
    try:
        subprocess.run([exe, "-version"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        return f"java at {exe} does not run: {err}"
    return None


def spice_missing_reason() -> str | None:
    """``None`` if SPICE can run without downloading anything, else why not.

    Constructing pycocoevalcap's ``Spice`` downloads Stanford CoreNLP 3.6.0 when its jars are absent; this
    check lets us never trigger that.
    """
    missing = [p.name for p in SPICE_MODELS if not p.exists()]
    if missing:
        return f"Stanford CoreNLP models not present ({', '.join(missing)} in {SPICE_MODELS[0].parent})"
    return java_missing_reason()


# ---------------------------------------------------------------------------------------------- tokenizers
def ptb_tokenize(texts: Sequence[str], *, java: str = "java") -> list[str]:
    """PTB-tokenize ``texts`` in ONE Java call, exactly as pycocoevalcap's ``PTBTokenizer`` does.

    Same jar and flags (``-preserveLines -lowerCase``), same punctuation tokens dropped afterwards. The
    temporary file goes to the system temp folder rather than into site-packages (which may be read-only).
    """
    if not texts:
        return []
    lines = [_LINE_BREAKS.sub(" ", t) for t in texts]
    fd, path = tempfile.mkstemp(prefix="m3diff-ptb-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write("\n".join(lines).encode())
        cmd = [
            java,
            "-cp",
            str(PTB_JAR),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
        ]
        proc = subprocess.run([*cmd, path], capture_output=True, check=False)
    finally:
        os.remove(path)
    if proc.returncode != 0:
        raise RuntimeError(f"PTB tokenizer failed (exit {proc.returncode}): {proc.stderr.decode()[-2000:]}")
    out = proc.stdout.decode().split("\n")
    if len(out) < len(lines):
        raise RuntimeError(f"PTB tokenizer returned {len(out)} lines for {len(lines)} captions")
    punct = set(PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in punct) for line in out[: len(lines)]]


# Fallback when Java is missing: lower-case, split off PTB's contractions (do n't, cube 's), keep
# hyphenated words and decimals whole, split other punctuation, and drop the same punctuation tokens as
# pycocoevalcap (plus brackets, which PTB would turn into the dropped -LRB- / -RRB- tokens).
_FALLBACK_TOKEN = re.compile(r"\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-.]\w+)*|\S")
_FALLBACK_DROP = set(PUNCTUATIONS) | set('()[]{}"')


def fallback_tokenize(text: str) -> str:
    """A regex approximation of PTB tokenization, used only when Java is missing (labelled in reports)."""
    tokens = _FALLBACK_TOKEN.findall(text.lower().replace("’", "'"))
    return " ".join(t for t in tokens if t not in _FALLBACK_DROP)


# ---------------------------------------------------------------------------------------------- METEOR
class MeteorProcess:
    """One METEOR 1.5 JVM speaking pycocoevalcap's ``-stdio`` protocol, reusable across subsets.

    pycocoevalcap's ``Meteor.compute_score`` sends one ``SCORE`` line per pair (answered by a statistics line)
    and then ``EVAL ||| stats ||| ...`` (answered by one score per pair and the corpus score). The statistics
    of a pair do not depend on the subset, so :meth:`stats` computes them once and :meth:`corpus_score` sends
    only the ``EVAL`` line per subset. Lines are written by a feeder thread while the answers are read, so
    the pipes never fill up and the JVM never waits for a round trip. Not thread-safe: one caller at a time
    (the lock guards the protocol, as in pycocoevalcap).
    """

    def __init__(self, *, java: str = "java") -> None:
        cmd = [java, "-jar", "-Xmx2G", METEOR_JAR.name, "-", "-", "-stdio", "-l", "en", "-norm"]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the JVM, closed in close()
        self._proc = subprocess.Popen(
            cmd, cwd=METEOR_JAR.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._lock = threading.Lock()

    def _exchange(self, lines: list[str], n_answers: int, progress: tqdm | None = None) -> list[str]:
        """Write ``lines`` (from a thread) and read ``n_answers`` answer lines."""
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        errors: list[BaseException] = []

        def feed() -> None:
            try:
                for line in lines:
                    proc.stdin.write(f"{line}\n".encode())
                proc.stdin.flush()
            except BaseException as err:  # noqa: BLE001 - reported by the reader below
                errors.append(err)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        answers = []
        for _ in range(n_answers):
            raw = proc.stdout.readline()
            if not raw:
                feeder.join(timeout=5)
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"METEOR process ended unexpectedly ({errors or ''}): {err}")
            answers.append(raw.decode().strip())
            if progress is not None:
                progress.update(1)
        feeder.join()
        return answers

    def stats(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, progress: bool = False
    ) -> list[str]:
        """The METEOR statistics line of each (hypothesis, references) pair (tokenized text)."""
        lines = []
        for hyp, refs in zip(hypotheses, references, strict=True):
            hyp = hyp.replace("|||", "").replace("  ", " ")  # as pycocoevalcap's Meteor._stat
            lines.append(" ||| ".join(("SCORE", " ||| ".join(refs), hyp)))
        with (
            self._lock,
            tqdm(total=len(lines), desc="METEOR stats", disable=not progress, leave=False) as bar,
        ):
            return self._exchange(lines, len(lines), bar)

    def corpus_score(self, stats: Sequence[str]) -> tuple[float, list[float]]:
        """(corpus METEOR, per-pair METEOR) of pairs with these statistics lines (``Meteor.compute_score``)."""
        if not stats:
            raise ValueError("corpus_score of an empty set")
        with self._lock:
            answers = self._exchange(["EVAL ||| " + " ||| ".join(stats)], len(stats) + 1)
        return float(answers[-1]), [float(a) for a in answers[:-1]]

    def close(self) -> None:
        """Stop the JVM (idempotent)."""
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        self._proc = None  # type: ignore[assignment]
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        self._stderr.close()

    def __del__(self) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- report
@dataclass
class ScoreReport:
    """Scores of one evaluation.

    Attributes:
        overall: metric name -> corpus score over every scored pair.
        subsets: kind (``categories`` / ``groups`` / ``benchmarks`` / ...) -> subset name -> metric -> score.
        num_pairs: ``{"overall": n, kind: {name: n}}``.
        per_pair: metric -> pair id -> that pair's score in the overall run (pycocoevalcap's ``imgToEval``);
            their mean is *not* a subset's score for corpus metrics (CIDEr, BLEU, METEOR).
        tokenizer: ``"ptb"`` or ``"fallback-regex"`` (Java missing: numbers are not comparable).
        notes: what could not be computed and why (``"SPICE unavailable: ..."``).
    """

    overall: dict[str, float]
    subsets: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    num_pairs: dict[str, Any] = field(default_factory=dict)
    per_pair: dict[str, dict[str, float]] = field(default_factory=dict)
    tokenizer: str = PTB
    notes: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        """The metric names computed, in pycocoevalcap's order."""
        return list(self.overall)

    def to_json(self) -> dict[str, Any]:
        """One JSON object: pycocoevalcap's keys at the top, subsets nested under their kind.

        ``{"Bleu_1": .., ..., "CIDEr": .., "num_pairs": n, "categories": {"color": {"Bleu_1": .., ...,
        "num_pairs": n}}, "groups": {...}, "tokenizer": "ptb", "notes": [...]}``
        """
        out: dict[str, Any] = {**self.overall, "num_pairs": self.num_pairs.get("overall", 0)}
        for kind, named in self.subsets.items():
            counts = self.num_pairs.get(kind, {})
            out[kind] = {name: {**scores, "num_pairs": counts.get(name, 0)} for name, scores in named.items()}
        out["tokenizer"] = self.tokenizer
        out["notes"] = list(self.notes)
        return out

    def rows(self) -> list[tuple[str, int, dict[str, float]]]:
        """(row label, pairs, scores) for ``overall`` then every subset, in kind order."""
        rows = [("overall", int(self.num_pairs.get("overall", 0)), self.overall)]
        for kind, named in self.subsets.items():
            for name, scores in named.items():
                rows.append((f"{kind}/{name}", int(self.num_pairs.get(kind, {}).get(name, 0)), scores))
        return rows

    def to_markdown(
        self, extra_rows: Iterable[tuple[str, int | None, Mapping[str, float]]] = (), *, scale: float = 100.0
    ) -> str:
        """A Markdown table: one row per subset, one column per metric (x100 by default, as papers print).

        ``extra_rows`` (label, pairs or None, scores) are appended, e.g. the ceiling / trivial baselines.
        """
        return markdown_table(
            [*self.rows(), *extra_rows], self.metrics, notes=self._header_notes(), scale=scale
        )

    def _header_notes(self) -> list[str]:
        notes = (
            [] if self.tokenizer == PTB else [f"tokenizer: {self.tokenizer} (not comparable to PTB scores)"]
        )
        return notes + list(self.notes)


def markdown_table(
    rows: Iterable[tuple[str, int | None, Mapping[str, float]]],
    metrics: Sequence[str],
    *,
    notes: Sequence[str] = (),
    scale: float = 100.0,
) -> str:
    """Render (label, pairs, scores) rows as a Markdown table; ``scale=100`` prints scores as papers do
    (two decimals), ``scale=1`` as pycocoevalcap does (four)."""
    head = "subset (x100)" if scale == 100 else "subset" if scale == 1 else f"subset (x{scale:g})"
    digits = 2 if scale >= 100 else 4
    lines = [f"| {head} | pairs | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for label, n, scores in rows:
        cells = [f"{scale * scores[m]:.{digits}f}" if m in scores else "–" for m in metrics]
        lines.append(f"| {label} | {'' if n is None else n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


# ---------------------------------------------------------------------------------------------- scorer
class CaptionScorer:
    """pycocoevalcap's metrics for one or many evaluations, with every subset rescored.

    Args:
        meteor: compute METEOR (one JVM, started on first use and kept until :meth:`close`).
        spice: compute SPICE, only if its CoreNLP models are already present (never downloads); otherwise
            the report carries ``"SPICE unavailable: <reason>"``.
        progress: show tqdm bars / log lines for thousands of pairs.

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

    def _meteor_process(self) -> MeteorProcess:
        if self._meteor is None or self._meteor._proc is None or self._meteor._proc.poll() is not None:
            log.info("starting METEOR (one JVM for this scorer)")
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
        if not predictions:
            raise ValueError("nothing to score: no predictions")
        missing = [i for i in predictions if i not in references]
        if missing:
            raise KeyError(f"{len(missing)} predicted id(s) have no references, e.g. {missing[:5]}")
        empty = [i for i in predictions if not references[i]]
        if empty:
            raise ValueError(f"{len(empty)} pair(s) have an empty reference list, e.g. {empty[:5]}")
        keys = list(predictions)
        index = {k: n for n, k in enumerate(keys)}
        jobs: list[tuple[str | None, str, list[int]]] = [(None, "overall", list(range(len(keys))))]
        for kind, named in (subsets or {}).items():
            for name, members in named.items():
                rows = sorted({index[m] for m in members if m in index})
                if rows:
                    jobs.append((kind, name, rows))
        notes: list[str] = []
        use_java = self.java_reason is None
        meteor = None
        if self.meteor and use_java:
            # Start the JVM now: it loads its paraphrase table (~8 s) while we tokenize and count n-grams.
            try:
                meteor = self._meteor_process()
            except OSError as err:
                notes.append(f"METEOR failed: {err}")
        elif not use_java:
            self._warn_once(
                f"Java unavailable ({self.java_reason}): METEOR/SPICE skipped, fallback tokenizer used"
            )
            notes.append(f"METEOR unavailable: {self.java_reason}")

        hyps, refs = self._tokenize(
            [predictions[k] for k in keys], [list(references[k]) for k in keys], use_java
        )

        # METEOR statistics come from the JVM (the other core) while python does BLEU / ROUGE / CIDEr.
        meteor_job = None
        if meteor is not None:
            pool = ThreadPoolExecutor(max_workers=1)
            # No progress bar from this thread (bars from two threads garble each other); a log line below.
            meteor_job = pool.submit(meteor.stats, hyps, refs)
            pool.shutdown(wait=False)

        scores: list[dict[str, float]] = [{} for _ in jobs]
        pair_scores: dict[str, list[float]] = {}
        self._score_ngrams(hyps, refs, jobs, scores, pair_scores)

        if meteor_job is not None:
            try:
                if not meteor_job.done():
                    log.info("waiting for the METEOR statistics of %d pairs", len(hyps))
                stats = meteor_job.result()
                for job, (_, _, rows) in zip(scores, jobs):
                    job["METEOR"], per_pair = meteor.corpus_score([stats[r] for r in rows])  # type: ignore[union-attr]
                    pair_scores.setdefault("METEOR", per_pair)
            except (OSError, RuntimeError) as err:
                self.close()
                notes.append(f"METEOR failed: {err}")
                self._warn_once(f"METEOR failed: {err}")
                for job in scores:
                    job.pop("METEOR", None)

        if self.spice:
            reason = "Java unavailable" if not use_java else spice_missing_reason()
            if reason is None:
                try:
                    spice = self._spice(keys, hyps, refs)
                    for job, (_, _, rows) in zip(scores, jobs):
                        job["SPICE"] = float(np.mean([spice[r] for r in rows]))
                    pair_scores["SPICE"] = spice
                except Exception as err:  # noqa: BLE001 - SPICE is optional: report, don't crash
                    reason = f"SPICE failed: {err}"
            if reason is not None:
                notes.append(f"SPICE unavailable: {reason}")
                self._warn_once(f"SPICE unavailable: {reason}")

        order = [*METRICS, "SPICE"]
        report = ScoreReport(
            overall={},
            tokenizer=PTB if use_java else FALLBACK,
            notes=list(dict.fromkeys(notes)),  # one line per distinct problem
            num_pairs={"overall": len(keys)},
            per_pair={m: dict(zip(keys, map(float, v))) for m, v in pair_scores.items()},
        )
        for job, (kind, name, rows) in zip(scores, jobs):
            ordered = {m: job[m] for m in order if m in job}
            if kind is None:
                report.overall = ordered
            else:
                report.subsets.setdefault(kind, {})[name] = ordered
                report.num_pairs.setdefault(kind, {})[name] = len(rows)
        return report

    def _tokenize(
        self, hyps: list[str], refs: list[list[str]], use_java: bool
    ) -> tuple[list[str], list[list[str]]]:
        """Tokenize predictions and references together (one PTB call), then split them back."""
        flat = hyps + [r for rs in refs for r in rs]
        if use_java:
            log.info("PTB-tokenizing %d captions", len(flat))
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
        jobs: list[tuple[str | None, str, list[int]]],
        scores: list[dict[str, float]],
        pair_scores: dict[str, list[float]],
    ) -> None:
        """BLEU, ROUGE_L and CIDEr of every job, as pycocoevalcap's scorers compute them.

        Each pair's n-grams are cooked once (pycocoevalcap's own cook functions) and handed to a fresh
        BleuScorer / CiderScorer per subset, so brevity penalty and IDF are those of the subset.
        ROUGE_L is pycocoevalcap's mean of per-pair scores: computed once per pair.
        """
        bleu_cooked, cider_cooked, rouge = [], [], []
        rouge_scorer = Rouge()
        pairs = tqdm(zip(hyps, refs), total=len(hyps), desc="n-grams", disable=not self.progress, leave=False)
        for h, rs in pairs:
            crefs = bleu_cook_refs(rs)
            bleu_cooked.append((crefs, bleu_cook_test(h, crefs)))
            cider_cooked.append((cider_cook_refs(rs), cider_cook_test(h)))
            rouge.append(rouge_scorer.calc_score([h], rs))
        pair_scores["ROUGE_L"] = rouge
        log.info("BLEU / ROUGE_L / CIDEr of %d pairs and %d subsets", len(hyps), len(jobs) - 1)
        bar = tqdm(list(zip(jobs, scores)), desc="scoring subsets", disable=not self.progress, leave=False)
        for (kind, name, rows), out in bar:
            label = name if kind is None else f"{kind}/{name}"
            bar.set_postfix_str(label, refresh=False)
            log.debug("scoring %s (%d pairs)", label, len(rows))
            bleu = BleuScorer(n=4)
            bleu.crefs = [bleu_cooked[r][0] for r in rows]
            bleu.ctest = [bleu_cooked[r][1] for r in rows]
            b, b_pairs = bleu.compute_score(option="closest", verbose=0)
            out.update({f"Bleu_{n + 1}": float(b[n]) for n in range(4)})
            out["ROUGE_L"] = float(np.mean([rouge[r] for r in rows]))
            cider = CiderScorer(n=4, sigma=6.0)
            cider.crefs = [cider_cooked[r][0] for r in rows]
            cider.ctest = [cider_cooked[r][1] for r in rows]
            c, c_pairs = cider.compute_score()
            out["CIDEr"] = float(c)
            if kind is None:  # the overall job comes first and holds every pair, in order
                pair_scores.update({f"Bleu_{n + 1}": b_pairs[n] for n in range(4)})
                pair_scores["CIDEr"] = list(c_pairs)

    def _spice(self, keys: list[str], hyps: list[str], refs: list[list[str]]) -> list[float]:
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


# ---------------------------------------------------------------------------------------------- files
def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import (os.umask can only be read by setting it)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder + ``os.replace``: a crash leaves
    either the old file or the new one, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def coco_ground_truth(references: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The COCO caption ground truth the field's scripts read (RCC's "reformat" files), string ids."""
    images, annotations = [], []
    for pair_id, refs in references.items():
        images.append({"id": pair_id, "filename": pair_id})
        for caption in refs:
            annotations.append({"image_id": pair_id, "id": len(annotations), "caption": caption})
    return {
        "info": {"description": "dummy"},
        "licenses": {"url": "dummy"},
        "type": "captions",
        "images": images,
        "annotations": annotations,
    }


def coco_predictions(predictions: Mapping[str, str]) -> list[dict[str, str]]:
    """The COCO result list ``[{"image_id", "caption"}]``."""
    return [{"image_id": pair_id, "caption": caption} for pair_id, caption in predictions.items()]
