"""Where pretrained weights come from: tags, ``hf-hub:`` names and local files -> one local file path.

Weights are resolved *before* any model is built, so a missing file fails in well under a second
(with ``HF_HUB_OFFLINE=1`` the hub client only looks in its cache) instead of after building a
400M-parameter encoder, and every failure becomes one :class:`BackboneWeightsError` that says what
was looked for and how to point at a local copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .backbone import BackboneWeightsError

# Names open_clip / timm / transformers give full-model checkpoints, best first (safetensors load
# without unpickling, so they win when both exist).
_CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
    "model.pth",
)
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz", ".ckpt")


def wants_weights(pretrained: object) -> bool:
    """None / False / "" / "none" mean random init; anything else asks for weights."""
    if pretrained is None or pretrained is False:
        return False
    return not (isinstance(pretrained, str) and pretrained.strip().lower() in ("", "none", "null", "false"))


def is_default_request(pretrained: object) -> bool:
    """True / "default" ask for the registry entry's default tag."""
    return pretrained is True or (
        isinstance(pretrained, str) and pretrained.strip().lower() in ("true", "default")
    )


def _fix_hint(example_file: str) -> str:
    return (
        f"To use a local copy, download it where there is network access and point at it, e.g. "
        f"backbone.pretrained=/path/to/{example_file} (a file, or a folder holding it); "
        "or set backbone.pretrained=null to build with random init."
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_state(cache_dir: str | None) -> str:
    from huggingface_hub import constants

    offline = " (HF_HUB_OFFLINE=1: no download attempted)" if constants.HF_HUB_OFFLINE else ""
    return f"Hugging Face cache {cache_dir or constants.HF_HUB_CACHE}{offline}"


def weights_error(
    backbone: str, looked_for: str, *, example_file: str, cause: BaseException | None = None
) -> str:
    """The one message every weights failure uses: what, where, why, how to fix."""
    why = f" Last error: {type(cause).__name__}: {str(cause).strip().splitlines()[0][:300]}" if cause else ""
    return (
        f"Cannot load pretrained weights for backbone {backbone!r}: looked for {looked_for}.{why} "
        + _fix_hint(example_file)
    )


def first_file(folder: str | Path, names: Iterable[str]) -> Path | None:
    """``folder / name`` for the first of ``names`` that is a file there, or None."""
    return next((Path(folder) / n for n in names if (Path(folder) / n).is_file()), None)


def local_checkpoint(path: str | Path, *, backbone: str, example_file: str) -> str | None:
    """An existing file, or the best checkpoint inside a folder; None if ``path`` is not a local path."""
    p = Path(path).expanduser()
    if p.is_file():
        return str(p)
    if p.is_dir():
        if (named := first_file(p, _CHECKPOINT_NAMES)) is not None:
            return str(named)
        found = sorted(f for f in p.iterdir() if f.suffix in _CHECKPOINT_SUFFIXES)
        if found:
            return str(found[0])
        raise BackboneWeightsError(
            weights_error(
                backbone,
                f"a checkpoint file {list(_CHECKPOINT_NAMES)} in folder {p}",
                example_file=example_file,
            )
        )
    if os.sep in str(path) or p.suffix in _CHECKPOINT_SUFFIXES:
        raise BackboneWeightsError(
            weights_error(backbone, f"local file {p} (it does not exist)", example_file=example_file)
        )
    return None


def hub_file(
    repo_id: str, filenames: tuple[str, ...], *, backbone: str, example_file: str, cache_dir: str | None
) -> str:
    """First of ``filenames`` found in (or downloadable from) Hugging Face Hub repo ``repo_id``."""
    from huggingface_hub import hf_hub_download

    last: BaseException | None = None
    for filename in filenames:
        try:
            return hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir)
        except Exception as e:  # offline / missing repo / missing file all mean "try the next name"
            last = e
    looked_for = f"{' or '.join(filenames)} of Hugging Face Hub repo {repo_id} in the {_hub_state(cache_dir)}"
    raise BackboneWeightsError(weights_error(backbone, looked_for, example_file=example_file, cause=last))


def resolve_open_clip(
    model_name: str,
    pretrained: Any,
    *,
    backbone: str,
    default_tag: str | None,
    cache_dir: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """open_clip weights -> (local checkpoint path, the tag's pretrained cfg or {}).

    ``pretrained``: True / "default" (the entry's default tag), an open_clip tag ("webli", "openai",
    "laion2b_s34b_b88k" …), ``hf-hub:org/repo``, or a local file / folder.
    """
    import open_clip

    example = "open_clip_pytorch_model.bin"
    if is_default_request(pretrained):
        if default_tag is None:
            raise BackboneWeightsError(
                weights_error(
                    backbone,
                    "its default weights, but it has no default tag (test models have none)",
                    example_file=example,
                )
            )
        pretrained = default_tag
    source = str(pretrained)
    if source.startswith("hf-hub:"):
        repo = source[len("hf-hub:") :].strip("/")
        names = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        return hub_file(repo, names, backbone=backbone, example_file=example, cache_dir=cache_dir), {}
    cfg = open_clip.get_pretrained_cfg(model_name, source)
    if not cfg:
        path = local_checkpoint(source, backbone=backbone, example_file=example)
        if path is None:
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            raise BackboneWeightsError(
                weights_error(
                    backbone,
                    f"open_clip tag {source!r} of {model_name} (known tags: {tags or 'none'}; not a local file either)",
                    example_file=example,
                )
            )
        return path, {}
    if cfg.get("hf_hub"):
        # open_clip writes hub locations as "org/repo/" (default file) or "org/repo/filename".
        repo, filename = os.path.split(cfg["hf_hub"])
        names = (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        return hub_file(repo, names, backbone=backbone, example_file=example, cache_dir=cache_dir), cfg
    return _open_clip_url(cfg, source, backbone=backbone, example_file=example, cache_dir=cache_dir), cfg


def _open_clip_url(
    cfg: dict[str, Any], source: str, *, backbone: str, example_file: str, cache_dir: str | None
) -> str:
    """Local path of a URL-only open_clip tag's checkpoint: open_clip's download cache, else a download."""
    import open_clip

    # URL-only tags: use open_clip's download cache; never open a socket when told to stay offline
    # (urllib ignores HF_HUB_OFFLINE and would hang until a network timeout).
    url = cfg.get("url", "")
    cached = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
    if cached.is_file():
        return str(cached)
    if _offline():
        raise BackboneWeightsError(
            weights_error(
                backbone,
                f"{cached} (tag {source!r}, from {url}; offline, so not downloaded)",
                example_file=example_file,
            )
        )
    try:
        return open_clip.download_pretrained(cfg, prefer_hf_hub=False, cache_dir=cache_dir)
    except Exception as e:
        raise BackboneWeightsError(
            weights_error(backbone, f"{url} (tag {source!r})", example_file=example_file, cause=e)
        ) from e


def resolve_timm(
    model_name: str, pretrained: Any, *, backbone: str, cache_dir: str | None = None
) -> tuple[str, str | None]:
    """timm weights -> (timm model name with the tag, local checkpoint path or None for timm's own download).

    ``pretrained``: True / "default" (timm's default tag), a timm tag ("augreg_in21k" …),
    ``hf-hub:org/repo``, or a local file / folder.
    """
    import timm

    example = "model.safetensors"
    source = str(pretrained)
    arch = model_name.split(".", 1)[0]
    if source.startswith("hf-hub:"):
        repo = source[len("hf-hub:") :].strip("/")
        path = hub_file(
            repo,
            ("model.safetensors", "pytorch_model.bin"),
            backbone=backbone,
            example_file=example,
            cache_dir=cache_dir,
        )
        return arch, path
    if not is_default_request(pretrained):
        model_name = f"{arch}.{source}"
    cfg = _timm_pretrained_cfg(model_name)
    if cfg is None and not is_default_request(pretrained):
        # Not a tag of this model: a local file or folder? (Tags win, as in open_clip.)
        path = local_checkpoint(source, backbone=backbone, example_file=example)
        if path is not None:
            return arch, path
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
        raise BackboneWeightsError(
            weights_error(
                backbone,
                f"timm weights {model_name!r} (known tags of {arch}: {tags or 'none'})",
                example_file=example,
            )
        )
    if cfg.file:
        path = local_checkpoint(cfg.file, backbone=backbone, example_file=example)
        if path is not None:
            return model_name, path
    if cfg.hf_hub_id:
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
        return model_name, hub_file(
            cfg.hf_hub_id, names, backbone=backbone, example_file=example, cache_dir=cache_dir
        )
    if _offline():
        raise BackboneWeightsError(
            weights_error(
                backbone,
                f"timm weights {model_name!r} at {cfg.url} (offline, so not downloaded)",
                example_file=example,
            )
        )
    return model_name, None  # URL-only weights: timm downloads them into the torch hub cache itself


def _timm_pretrained_cfg(model_name: str) -> Any:
    """timm's pretrained cfg of ``arch.tag`` (or the default tag), None for a tag timm does not know."""
    import timm

    try:
        return timm.models.get_pretrained_cfg(model_name)
    except RuntimeError:  # timm raises for a tag it does not know
        return None
