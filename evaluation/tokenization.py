"""Caption tokenization before scoring: pycocoevalcap's PTB tokenizer in one Java call, and a labelled regex
fallback for machines without Java (its scores are not comparable with published ones)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence

from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

from evaluation.java import PTB_JAR

# Characters the PTB tokenizer treats as line ends: one inside a caption would shift every later line.
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\u2028\u2029]")


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
