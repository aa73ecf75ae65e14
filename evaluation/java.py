"""The Java side of pycocoevalcap: where its jars are and whether ``java`` runs.

The PTB tokenizer, METEOR 1.5 and SPICE are Java programs shipped inside pycocoevalcap; pycocoevalcap calls
plain ``java``. These checks let the scorer fall back (without Java) or leave SPICE out (without its models)
instead of failing, and never trigger SPICE's download of Stanford CoreNLP.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pycocoevalcap

PKG = Path(next(iter(pycocoevalcap.__path__)))  # a namespace package: no __file__
PTB_JAR = PKG / "tokenizer" / "stanford-corenlp-3.4.1.jar"
METEOR_JAR = PKG / "meteor" / "meteor-1.5.jar"
SPICE_MODELS = (
    PKG / "spice" / "lib" / "stanford-corenlp-3.6.0.jar",
    PKG / "spice" / "lib" / "stanford-corenlp-3.6.0-models.jar",
)


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
