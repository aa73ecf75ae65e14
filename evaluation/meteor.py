"""METEOR 1.5 as one long-lived JVM speaking pycocoevalcap's ``-stdio`` protocol, reusable across subsets."""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Sequence

from evaluation.java import METEOR_JAR


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

    @property
    def alive(self) -> bool:
        """Whether the JVM is still running (it is restarted by the scorer when not)."""
        return self._proc is not None and self._proc.poll() is None

    def _exchange(self, lines: list[str], n_answers: int) -> list[str]:
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
        feeder.join()
        return answers

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[str]:
        """The METEOR statistics line of each (hypothesis, references) pair (tokenized text)."""
        lines = []
        for hyp, refs in zip(hypotheses, references, strict=True):
            hyp = hyp.replace("|||", "").replace("  ", " ")  # as pycocoevalcap's Meteor._stat
            lines.append(" ||| ".join(("SCORE", " ||| ".join(refs), hyp)))
        with self._lock:
            return self._exchange(lines, len(lines))

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
