"""transformers vision towers in mdp: taps are transformers' own hidden states, LLaVA-OneVision's tower loads from
its folder (any key layout), the taps the paper names are pinned, and the usual backbone contract holds."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

import mdp
from mdp.hf_adapter import is_hf_checkpointing

pytestmark = pytest.mark.usefixtures("one_thread")


def images(batch=2, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def hf_llava(llava_twin):
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(llava_twin).eval()


def test_llava_onevision_tower_taps_are_its_hidden_states(llava_twin, hf_llava):
    """Tap k = encoder layer k, 0-based = transformers' hidden_states[k + 1]; the last layer = what LLaVA-OneVision's
    vision_feature_layer=-1 feeds its projector."""
    bb = mdp.build_backbone(f"hf:{llava_twin}", layers=[1, 3, 5], pretrained=True).eval()
    assert (bb.width, bb.grid, bb.num_tokens, bb.layers) == (32, (4, 4), 16, (1, 3, 5))
    assert bb.spec == mdp.ImageSpec(size=32, mean=(0.5,) * 3, std=(0.5,) * 3, pipeline="llava_onevision")
    x = images()
    with torch.no_grad():
        taps = bb(x)
        hidden = hf_llava.model.vision_tower(x, output_hidden_states=True).hidden_states
        features = hf_llava.model.get_image_features(
            pixel_values=x, image_sizes=torch.tensor([[32, 32]] * 2), batch_num_images=torch.tensor([2])
        ).pooler_output
    assert len(hidden) == 7  # embeddings + 6 layers
    for tap, k in zip(taps, (1, 3, 5)):
        assert torch.equal(tap, hidden[k + 1])
    projected = hf_llava.model.multi_modal_projector(taps[-1])
    for i in range(2):
        assert torch.allclose(features[i][:-1], projected[i], atol=1e-6)  # then the image_newline row


def test_hub_key_layouts_and_shards_load_the_same_tower(llava_twin, tmp_path):
    """Hub LLaVA checkpoints name tower tensors vision_tower.vision_model.*; newer saves vision_tower.* or
    model.vision_tower.*; checkpoints may be sharded. All give the same taps."""
    state = load_file(llava_twin / "model.safetensors")
    x = images(1)
    with torch.no_grad():
        expected = mdp.build_backbone(f"hf:{llava_twin}", layers=[0, 5], pretrained=True)(x)
    for layout in ("vision_tower.vision_model.", "model.vision_tower."):
        folder = tmp_path / layout.strip(".").replace(".", "_")
        folder.mkdir()
        renamed = {k.replace("vision_tower.", layout, 1): v for k, v in state.items()}
        keys = sorted(renamed)
        shards = {"model-1.safetensors": keys[::2], "model-2.safetensors": keys[1::2]}
        for name, part in shards.items():
            save_file({k: renamed[k] for k in part}, folder / name)
        index = {"weight_map": {k: n for n, part in shards.items() for k in part}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        (folder / "config.json").write_text((llava_twin / "config.json").read_text())
        with torch.no_grad():
            got = mdp.build_backbone(f"hf:{folder}", layers=[0, 5], pretrained=True)(x)
        assert all(torch.equal(a, b) for a, b in zip(got, expected)), layout


def test_random_init_builds_the_folder_architecture_and_missing_weights_fail_fast(llava_twin, tmp_path):
    bb = mdp.build_backbone(f"hf:{llava_twin}", layers=[-1], pretrained=None)
    assert bb.layers == (5,) and len(bb.model.encoder.layers) == 6
    start = time.monotonic()
    for name, pretrained, looked_for in (
        (f"hf:{tmp_path}/nothing", None, "does not exist"),
        ("hf:someone/not-in-the-cache", None, "someone/not-in-the-cache"),
        ("siglip-hf-tiny", True, "has none"),
        ("siglip-hf-tiny", str(tmp_path), "model.safetensors"),
    ):
        with pytest.raises(mdp.BackboneWeightsError, match=looked_for):
            mdp.build_backbone(name, pretrained=pretrained, cache_dir=str(tmp_path))
    assert time.monotonic() - start < 20
    # A folder whose checkpoint has no (matching) tower: says how many tensors were missing.
    (tmp_path / "other").mkdir()
    save_file({"something.else": torch.zeros(1)}, tmp_path / "other" / "model.safetensors")
    with pytest.raises(mdp.BackboneWeightsError, match="not found"):
        mdp.build_backbone("siglip-hf-tiny", pretrained=str(tmp_path / "other"))


def test_clip_vision_model_drops_its_class_token_and_reads_clip_normalisation(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    clip = CLIPVisionModel(
        CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                         image_size=32, patch_size=8)
    ).eval()  # fmt: skip
    clip.save_pretrained(tmp_path)
    bb = mdp.build_backbone(f"hf:{tmp_path}", layers=[0, 2], pretrained=True).eval()
    # No preprocessor_config.json in the folder: CLIP's normalisation.
    assert bb.spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    x = images(1)
    with torch.no_grad():
        taps = bb(x)
        hidden = clip(x, output_hidden_states=True).hidden_states
    assert [t.shape for t in taps] == [(1, 16, 32)] * 2
    assert torch.equal(taps[0], hidden[1][:, 1:]) and torch.equal(taps[1], hidden[3][:, 1:])


def test_tiny_hf_siglip_contract_pruning_and_other_image_sizes():
    torch.manual_seed(0)
    bb = mdp.build_backbone("siglip-hf-tiny", layers=[0, 2], image_size=64)
    assert (bb.width, bb.grid, bb.spec.size, bb.spec.mean) == (192, (4, 4), 64, (0.5, 0.5, 0.5))
    assert len(bb.model.encoder.layers) == 3  # layers after the deepest tap are dropped
    sum(t.square().sum() for t in bb(images(1, 64))).backward()  # 64 px: interpolated position embeddings
    unused = [n for n, p in bb.named_parameters() if p.grad is None or not p.grad.any()]
    assert unused == []


def test_gradient_checkpointing_uses_the_library_switch_and_keeps_gradients():
    torch.manual_seed(0)
    bb = mdp.build_backbone("siglip-hf-tiny", layers=[1, 3], image_size=32)
    x = images(2, 32)

    def grads():
        bb.zero_grad()
        sum((t * t).mean() for t in bb(x)).backward()
        return {n: p.grad.clone() for n, p in bb.named_parameters()}

    plain = grads()
    bb.set_grad_checkpointing(True)
    assert is_hf_checkpointing(bb.model)
    checkpointed = grads()
    assert all(torch.allclose(plain[n], checkpointed[n], atol=1e-6, rtol=1e-5) for n in plain)


def test_paper_tower_entry_pins_the_taps_and_sizes():
    """llava-ov-siglip-so400m: LLaVA-OneVision's 26-layer SigLIP-so400m at 384 px, taps 16/19/22/25 (the paper's
    17/20/23/26 counted from 1); 25 is the last layer, the one LLaVA-OneVision's projector reads."""
    from transformers import SiglipVisionConfig

    from mdp import LLAVA_OV_TAPS, LLAVA_OV_TOWER

    config = SiglipVisionConfig(**LLAVA_OV_TOWER)
    assert (config.num_hidden_layers, config.hidden_size, config.image_size, config.patch_size) == (
        26,
        1152,
        384,
        14,
    )
    from transformers import LlavaOnevisionConfig

    hf_default = LlavaOnevisionConfig().vision_config
    for key in ("num_hidden_layers", "hidden_size", "intermediate_size", "image_size", "patch_size"):
        assert getattr(hf_default, key) == getattr(config, key)
    assert LlavaOnevisionConfig().vision_feature_layer == -1
    assert LLAVA_OV_TAPS == (16, 19, 22, 25)
    assert "llava-ov-siglip-so400m" in mdp.list_backbones() and "hf:<model>" in mdp.list_backbones()
