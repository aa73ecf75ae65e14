"""Backbone adapters and registry: tiny variants offline, taps, local weights, the weights error."""

import time

import pytest
import torch

import mdp

TINY = ["siglip-tiny", "clip-tiny", "vit-tiny"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return {
        name: mdp.build_backbone(name, layers=[1, 3, 5], pretrained=None, image_size=128).eval()
        for name in TINY
    }


def images(batch=2, size=128, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", TINY)
def test_tiny_backbones_build_offline_and_tap_the_requested_layers(tiny, name):
    bb = tiny[name]
    assert isinstance(bb, mdp.Backbone)
    with torch.no_grad():
        out = bb(images())
    assert len(out) == 3
    assert all(t.shape == (2, 64, 192) for t in out)  # 128 px / patch 16 = 8x8 patch tokens, no prefix token
    assert bb.width == 192 and bb.layers == (1, 3, 5) and bb.num_tokens == 64 and bb.grid == (8, 8)
    assert bb.spec.size == 128
    assert all(torch.isfinite(t).all() for t in out)


@pytest.mark.parametrize("name", TINY)
def test_every_backbone_parameter_is_used(name):
    """Heads, final norms and blocks past the deepest tap are pruned: DDP needs no find_unused_parameters."""
    bb = mdp.build_backbone(name, layers=[0, 2], image_size=32)
    sum(t.square().sum() for t in bb(images(1, 32))).backward()
    unused = [n for n, p in bb.named_parameters() if p.grad is None or not p.grad.any()]
    assert unused == []


def test_tiny_backbones_mirror_their_family(tiny):
    siglip, clip, vit = tiny["siglip-tiny"], tiny["clip-tiny"], tiny["vit-tiny"]
    assert siglip.spec.mean == siglip.spec.std == (0.5, 0.5, 0.5)  # SigLIP's, even with random init
    assert siglip.model.trunk.num_prefix_tokens == 0  # no class token
    assert type(siglip.model).__name__ == "TimmModel"  # built by open_clip, as SigLIP is
    assert clip.spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert type(clip.model).__name__ == "VisionTransformer" and clip.model.class_embedding.shape == (192,)
    assert vit.spec.mean == pytest.approx((0.485, 0.456, 0.406))
    assert vit.model.num_prefix_tokens == 1 and len(vit.model.blocks) == 6
    for bb in tiny.values():
        assert sum(p.numel() for p in bb.parameters()) < 3_000_000


def test_layers_resolve_negative_indices_keep_the_requested_order_and_prune():
    bb = mdp.build_backbone("vit-tiny", layers=[-1, 0, -4])
    assert bb.layers == (5, 0, 2)
    bb_sorted = mdp.build_backbone("vit-tiny", layers=[0, 2, 5])
    bb_sorted.load_state_dict(bb.state_dict())
    x = images(1)
    with torch.no_grad():
        a, b = bb(x), bb_sorted(x)
    assert torch.equal(a[0], b[2]) and torch.equal(a[1], b[0]) and torch.equal(a[2], b[1])
    shallow = mdp.build_backbone("clip-tiny", layers=[0, 2])
    assert len(shallow.model.transformer.resblocks) == 3  # blocks after the deepest tap are dropped
    with pytest.raises(ValueError, match="has 6 blocks"):
        mdp.build_backbone("vit-tiny", layers=[6])
    with pytest.raises(ValueError, match="same block twice"):
        mdp.build_backbone("vit-tiny", layers=[5, -1])
    with pytest.raises(ValueError, match="64x64 images, got 128x128"):
        mdp.build_backbone("vit-tiny", layers=[1], image_size=64)(images(1))


def test_real_sizes_build_with_random_init_at_any_size():
    for name, width, patch, mean in [("siglip-b16", 768, 16, 0.5), ("clip-b32", 768, 32, 0.48145466)]:
        bb = mdp.build_backbone(name, layers=[-1], image_size=64).eval()
        with torch.no_grad():
            (out,) = bb(images(1, 64))
        assert out.shape == (1, (64 // patch) ** 2, width)
        assert bb.layers == (11,) and bb.spec.mean[0] == pytest.approx(mean)
        assert (
            len(bb.model.trunk.blocks if hasattr(bb.model, "trunk") else bb.model.transformer.resblocks) == 12
        )


def test_prefix_patterns_reach_any_timm_or_open_clip_model():
    bb = mdp.build_backbone(
        "timm:vit_small_patch16_224", layers=[0, 1], image_size=32, depth=2
    )  # kwargs reach timm
    assert bb.width == 384 and bb.grid == (2, 2) and bb.spec.size == 32
    assert [t.shape for t in bb(images(1, 32))] == [(1, 4, 384)] * 2
    bb = mdp.build_backbone("open_clip:mdp-ViT-T-16-SigLIP", image_size=32)
    assert bb.layers == (1, 3, 5) and bb.spec.mean == (0.5, 0.5, 0.5)  # SigLIP by name: 0.5 / 0.5
    with pytest.raises(ValueError, match="not a ViT"):
        mdp.build_backbone("timm:resnet18", image_size=32)
    with pytest.raises(ValueError, match="not a ViT"):
        mdp.build_backbone("open_clip:RN50")


@pytest.mark.parametrize("name", TINY)
def test_local_weight_files_are_loaded(tmp_path, name):
    """A local checkpoint in the family's own format is passed through and really loaded."""
    torch.manual_seed(1)
    if name == "vit-tiny":
        import timm

        reference = timm.create_model("vit_tiny_patch16_224", depth=6, img_size=128, num_classes=0)
        encoder = reference
    else:
        import open_clip

        mdp.build_backbone(name)  # registers the tiny configs with open_clip
        model_name = {"siglip-tiny": "mdp-ViT-T-16-SigLIP", "clip-tiny": "mdp-ViT-T-16"}[name]
        reference = open_clip.create_model(model_name)
        encoder = reference.visual
    path = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), path)
    bb = mdp.build_backbone(name, layers=[1, 5], pretrained=str(path)).eval()
    x = images(1)
    with torch.no_grad():
        expected = encoder.eval().forward_intermediates(
            x, indices=[1, 5], output_fmt="NLC", intermediates_only=True
        )
    expected = expected["image_intermediates"] if isinstance(expected, dict) else expected
    got = bb(x)
    assert all(torch.allclose(g, e, atol=1e-5) for g, e in zip(got, expected))
    # A folder holding the checkpoint works too.
    assert mdp.build_backbone(name, layers=[1], pretrained=str(tmp_path)).layers == (1,)


@pytest.mark.parametrize(
    ("name", "pretrained", "looked_for"),
    [
        ("siglip-b16", "webli", "timm/ViT-B-16-SigLIP"),
        ("clip-b16", True, "timm/vit_base_patch16_clip_224.openai"),
        ("siglip-so400m-14-384", "default", "timm/ViT-SO400M-14-SigLIP-384"),
        ("clip-b32", "hf-hub:someone/missing-repo", "someone/missing-repo"),
        ("vit-tiny", True, "vit_tiny_patch16_224.augreg_in21k_ft_in1k"),
        ("clip-b32", "/no/such/open_clip_pytorch_model.bin", "/no/such/open_clip_pytorch_model.bin"),
        ("clip-b32", "laion9000", "known tags"),
        ("siglip-tiny", True, "no default tag"),
    ],
)
def test_missing_pretrained_weights_raise_one_clear_error_fast(tmp_path, name, pretrained, looked_for):
    start = time.monotonic()
    with pytest.raises(mdp.BackboneWeightsError) as err:
        mdp.build_backbone(name, pretrained=pretrained, cache_dir=str(tmp_path))
    assert time.monotonic() - start < 20
    message = str(err.value)
    assert repr(name) in message and looked_for in message
    assert "backbone.pretrained=/path/to/" in message and "backbone.pretrained=null" in message


def test_registry():
    names = mdp.list_backbones()
    assert names == sorted(names)
    for expected in [
        *TINY,
        "siglip-b16",
        "siglip-so400m-14-384",
        "clip-b16",
        "clip-b32",
        "timm:<model>",
        "open_clip:<model>",
    ]:
        assert expected in names

    @mdp.register_backbone("test-registry-vit")
    def factory(*, layers, pretrained, image_size, **kw):
        return mdp.build_backbone(
            "vit-tiny", layers=layers, pretrained=pretrained, image_size=image_size, **kw
        )

    assert "test-registry-vit" in mdp.list_backbones()
    assert mdp.build_backbone("test-registry-vit", layers=[0], image_size=32, depth=1).layers == (0,)
    with pytest.raises(ValueError, match="already registered"):
        mdp.register_backbone("test-registry-vit")(factory)
    with pytest.raises(ValueError, match="did you mean"):
        mdp.build_backbone("siglip-tinny")
    with pytest.raises(ValueError, match="no model config"):
        mdp.build_backbone("open_clip:ViT-Q-99")

    @mdp.register_backbone("test-registry-bad")
    def bad(**kw):
        return torch.nn.Identity()

    with pytest.raises(TypeError, match="not an mdp.Backbone"):
        mdp.build_backbone("test-registry-bad")


def test_gradient_checkpointing_passthrough():
    torch.manual_seed(0)
    bb = mdp.build_backbone("clip-tiny", layers=[1, 3], image_size=64)
    x = images(1, 64)
    plain = [t.detach() for t in bb(x)]
    bb.set_grad_checkpointing(True)
    out = bb(x)
    sum(t.sum() for t in out).backward()
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(out, plain))
    assert bb.model.conv1.weight.grad is not None
