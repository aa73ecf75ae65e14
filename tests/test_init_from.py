"""``model.init_from``: the kit started from a (tiny random) LLaVA-OneVision checkpoint is that checkpoint at step 0.

Checked against transformers' own ``LlavaOnevisionForConditionalGeneration`` and ``LlavaOnevisionProcessor`` on the
same folder: the projected visual tokens of a two-image input, the prompt's token layout, the loss on the assistant
turn and greedy captions. MDP starts as the identity and LoRA's B is zero, so nothing differs at step 0.
"""

import pytest
import torch
from support.llava_inputs import INSTRUCTION, hf_inputs, twin_config

from experiments.common.config import ConfigError, to_container
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.llava_onevision import InitFromError
from mdp.hf_adapter import is_hf_checkpointing

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def module(llava_twin):
    torch.manual_seed(0)
    return CaptionerModule(config=to_container(twin_config(llava_twin))).eval()


@pytest.fixture(scope="module")
def hf(llava_twin):
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(llava_twin).eval()


@pytest.fixture(scope="module")
def processed(llava_twin):
    """Two 32 px images and the instruction through LLaVA-OneVision's processor, as HF would feed the model."""
    return hf_inputs(llava_twin, INSTRUCTION, 0)


def test_config_is_resolved_from_the_folder(module, llava_twin):
    cfg = module.config
    assert cfg["backbone"]["name"] == f"hf:{llava_twin}" and cfg["backbone"]["image_size"] == 32
    assert cfg["model"]["lm"]["name"] == str(llava_twin) and cfg["model"]["token_pool"] == 1
    assert cfg["model"]["image_positions"] == "none"  # the default tiny model's sincos would change step 0
    assert module.image_spec.size == 32 and module.image_spec.mean == (0.5, 0.5, 0.5)
    assert module.model.mdp.config.identity_init  # on by default with init_from
    assert module.model.segment is None and module.model.image_newline is not None


def test_projected_visual_tokens_equal_llava_onevision_image_features(module, hf):
    """Two pairs = two samples of two images each: HF's per-image features (16 patch tokens, then image_newline)
    equal the kit's image blocks."""
    g = torch.Generator().manual_seed(1)
    before, after = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        blocks = module.model.encode(before, after).images
        features = hf.model.get_image_features(
            pixel_values=torch.stack([before, after], 1).flatten(0, 1),
            image_sizes=torch.tensor([[32, 32]] * 4),
            batch_num_images=torch.tensor([2, 2]),
        ).pooler_output
    assert [f.shape for f in features] == [(17, 48)] * 4
    for pair in range(2):
        for image in range(2):
            diff = (features[2 * pair + image] - blocks[image][pair]).abs().max()
            assert diff <= 1e-5, (pair, image, diff)


def test_prompt_is_laid_out_as_llava_onevision_s_processor_does(module, processed, llava_twin):
    from transformers import AutoTokenizer

    image = AutoTokenizer.from_pretrained(llava_twin).convert_tokens_to_ids("<image>")
    text_0, text_1, text_2 = (s.tolist() for s in module.model.text_segments)
    expected = text_0 + [image] * 17 + text_1 + [image] * 17 + text_2
    assert processed["input_ids"][0].tolist() == expected
    assert module.tokenizer.decode(text_2).endswith("<|im_start|>assistant\n")
    assert module.model.eos_token_id == module.tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_loss_is_on_the_assistant_turn_only_and_equals_hf_s(module, hf, processed):
    caption = "the red cube on the left is gone."
    ids, mask = module.tokenize([caption])
    assert ids[0, -1] == module.model.eos_token_id  # the caption ends with the end-of-turn token
    base = processed["pixel_values"][:, 0]  # each image's base-resolution view
    with torch.no_grad():
        loss, _ = module.model(base[0:1], base[1:2], ids, mask)
        prompt = processed["input_ids"]
        labels = torch.cat([torch.full_like(prompt, -100), ids], dim=1)
        reference = hf(
            input_ids=torch.cat([prompt, ids], dim=1),
            pixel_values=processed["pixel_values"],
            image_sizes=processed["image_sizes"],
            batch_num_images=processed["batch_num_images"],
            labels=labels,
        ).loss
    assert torch.allclose(loss, reference, atol=1e-5), (loss, reference)


def test_greedy_caption_equals_hf_generate(module, hf, processed):
    base = processed["pixel_values"][:, 0]
    mine, _ = module.model.generate(base[0:1], base[1:2], max_new_tokens=12)
    with torch.no_grad():
        out = hf.generate(
            **processed,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=module.model.eos_token_id,
            pad_token_id=module.tokenizer.pad_token_id,
        )
    theirs = out[0, processed["input_ids"].shape[1] :].tolist()
    if module.model.eos_token_id in theirs:
        theirs = theirs[: theirs.index(module.model.eos_token_id)]
    assert mine == [theirs] and len(theirs) > 3


def test_gradients_with_and_without_activation_checkpointing_agree(llava_twin):
    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        flag = str(checkpointing).lower()
        cfg = twin_config(
            llava_twin, f"backbone.grad_checkpointing={flag}", f"model.lm.grad_checkpointing={flag}"
        )
        torch.manual_seed(0)
        module = CaptionerModule(config=to_container(cfg)).train()
        model = module.model
        assert is_hf_checkpointing(model.backbone.model) == is_hf_checkpointing(model.lm) == checkpointing
        with torch.no_grad():  # move off step 0: LoRA B and MDP's zero map would hide most gradients
            for name, p in module.model.named_parameters():
                if "lora_B" in name or "zero_out" in name:
                    p.normal_(std=0.02)
        g = torch.Generator().manual_seed(2)
        before, after = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 32, 32, generator=g)
        ids, mask = module.tokenize(["a small blue sphere appears.", "the lighting changed."])
        torch.manual_seed(1)  # LoRA dropout: the same masks in both runs (checkpointing replays the RNG)
        loss, _ = module.model(before, after, ids, mask)
        loss.backward()
        return {n: p.grad for n, p in module.model.named_parameters() if p.requires_grad}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 50
    assert all(plain[n] is not None and plain[n].abs().sum() > 0 for n in plain)
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], rtol=1e-4, atol=1e-6), name


def test_bad_init_from_gives_clear_errors(llava_twin, tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        twin_config(tmp_path)
    with pytest.raises(ConfigError, match="end backbone.layers with 5"):  # found before the folder is read
        twin_config(llava_twin, "backbone.layers=[1,3]")
    config = to_container(twin_config(llava_twin))
    config["backbone"]["layers"] = [1, 3]
    with pytest.raises(InitFromError, match="end backbone.layers with 5"):  # and by the loader itself
        CaptionerModule(config=config)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            "backbone.layers=[1,3,9]",
            "config error: backbone.layers=[1, 3, 9]: backbone 'hf:",
        ),  # 6-layer tower
        ("backbone.layers=[1,3,4]", "config error: backbone.layers=[1, 3, 4] ends at layer 4, but"),
    ],
)
def test_a_tap_list_that_does_not_fit_the_folder_is_one_line(llava_twin, capsys, overrides, message):
    from experiments import train

    assert train.main(["--args", f"model.init_from={llava_twin} {overrides}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_a_tap_list_that_does_not_fit_any_backbone_is_one_line(capsys):
    from experiments import train

    assert train.main(["--args", "backbone.layers=[1,3,9] data.train_size=8 data.val_size=4"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("config error: backbone.layers: backbone 'siglip-tiny' has 6 blocks")
        and err.count("\n") == 1
    )


def test_a_missing_folder_is_a_one_line_config_error(tmp_path, capsys):
    from experiments import train

    assert train.main(["--args", f"model.init_from={tmp_path}/nothing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: model.init_from=") and "no config.json" in err
