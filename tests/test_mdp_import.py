"""`mdp` is plain torch: it imports, builds and runs where lightning / omegaconf cannot be imported, and a
backbone whose library is not installed says which extra of m3diff-mdp brings it."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from mdp import _optional

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = ("lightning", "pytorch_lightning", "lightning_fabric", "omegaconf", "transformers")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"blocked in this test: {name}", name=name)
            return None

    sys.meta_path.insert(0, Block())

    import torch
    import mdp

    after_import = sorted(m for m in ("timm", "open_clip", "torchvision") if m in sys.modules)
    module = mdp.MDP(dim=16, num_layers=2, num_heads=2)
    feats = [torch.randn(1, 4, 16) for _ in range(2)]
    out = module(feats, feats)
    backbone = mdp.build_backbone("siglip-tiny", layers=[0, 1], image_size=32)
    taps = backbone(torch.zeros(1, 3, 32, 32))
    try:
        mdp.build_backbone("siglip-hf-tiny")
        hf_error = ""
    except ImportError as err:
        hf_error = str(err)
    print(json.dumps({
        "hf_error": hf_error,
        "lazy_ok": after_import,
        "all": sorted(mdp.__all__),
        "out": list(out.before.shape),
        "taps": [list(t.shape) for t in taps],
        "leaked": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    }))
    """
)


@pytest.mark.slow
def test_import_mdp_without_lightning_or_omegaconf():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["lazy_ok"] == [], (
        "timm / open_clip / torchvision must only be imported when a backbone is built"
    )
    assert result["leaked"] == []
    assert result["out"] == [1, 4, 16]
    # transformers towers say what they need, and only when one is built.
    assert (
        "'siglip-hf-tiny' needs transformers" in result["hf_error"] and "m3diff-mdp[hf]" in result["hf_error"]
    )
    assert result["taps"] == [[1, 4, 192], [1, 4, 192]]
    assert set(result["all"]) >= {
        "MDP",
        "MDPConfig",
        "MDPOutput",
        "Backbone",
        "ImageSpec",
        "build_backbone",
        "register_backbone",
        "list_backbones",
        "BackboneWeightsError",
    }


MISSING = textwrap.dedent(
    """
    import json, sys

    sys.modules["open_clip"] = None  # as if not installed: `import open_clip` raises ModuleNotFoundError
    sys.modules["timm"] = None
    sys.modules["transformers"] = None

    import torch
    import mdp

    out = mdp.MDP(dim=16, num_layers=1, num_heads=2)([torch.randn(1, 4, 16)], [torch.randn(1, 4, 16)])
    errors = {}
    for name in ("siglip-tiny", "clip-b16", "vit-tiny", "timm:vit_small_patch16_224", "open_clip:ViT-B-32",
                 "siglip-hf-tiny"):
        try:
            mdp.build_backbone(name, pretrained=None)
        except ImportError as e:
            errors[name] = str(e)
    print(json.dumps(errors))
    """
)


@pytest.mark.slow
def test_a_missing_backbone_library_names_the_extra_to_install():
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", MISSING], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(errors) == {
        "siglip-tiny", "clip-b16", "vit-tiny", "timm:vit_small_patch16_224", "open_clip:ViT-B-32", "siglip-hf-tiny",
    }  # fmt: skip
    for name in ("siglip-tiny", "clip-b16", "open_clip:ViT-B-32"):
        assert f"backbone {name!r} needs open_clip (pip package open_clip_torch)" in errors[name]
        assert 'pip install "m3diff-mdp[open_clip]"' in errors[name]
    for name in ("vit-tiny", "timm:vit_small_patch16_224"):
        assert 'pip install "m3diff-mdp[timm]"' in errors[name], errors[name]
    assert 'pip install "m3diff-mdp[hf]"' in errors["siglip-hf-tiny"], errors["siglip-hf-tiny"]


def test_an_error_inside_the_backbone_library_is_not_disguised(monkeypatch):
    """Only the library itself missing is translated; its own missing dependency keeps pip's wording."""

    def broken(name):
        raise ModuleNotFoundError("No module named 'torchvision'", name="torchvision")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="torchvision"):
        _optional.require("timm", backbone="vit-tiny")
