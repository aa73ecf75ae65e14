"""The backbone families' libraries are optional: a missing one is named with the pip extra that brings it.

``mdp`` itself needs torch alone, so a project that only uses :class:`mdp.MDP` (or registers its own
backbones) never installs timm, open_clip or transformers. The built-in backbones import their family's
library when one is built; this module turns "No module named 'open_clip'" into what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "m3diff-mdp"

# import name -> (pip package, the extra of DISTRIBUTION that installs it)
_EXTRAS: dict[str, tuple[str, str]] = {
    "timm": ("timm", "timm"),
    "open_clip": ("open_clip_torch", "open_clip"),
    "transformers": ("transformers", "hf"),
}


def require(module: str, *, backbone: str) -> ModuleType:
    """Import ``module`` (a key of ``_EXTRAS``) for ``backbone``, or raise an ImportError saying what to install.

    Only the library itself being absent is translated; an error raised *inside* it (one of its own
    dependencies missing, a broken install) propagates unchanged, since pip's message is the right one there.
    """
    package, extra = _EXTRAS[module]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise ImportError(
            f"backbone {backbone!r} needs {module} (pip package {package}), which is not installed. "
            f'Install mdp with that extra: pip install "{DISTRIBUTION}[{extra}]" (or: pip install {package})'
        ) from e
