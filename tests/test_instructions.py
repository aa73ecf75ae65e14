"""A sample's own ``instruction`` is its user turn's text when the LM has a chat template (here the tiny random
LLaVA-OneVision twin, ``model.init_from``); a sample without one gets ``model.prompt``; the tiny default LMs (no
chat template) ignore instructions. Pairs of different prompt lengths are left-padded together: each pair's loss,
logits and greedy caption are the ones it gets alone, and alone they equal transformers' LLaVA-OneVision.
"""

import pytest
import torch
from support.captioner import batch_of
from support.captioner import make_module as make_tiny_module
from support.llava_inputs import INSTRUCTION, hf_inputs, twin_config
from support.records import make_llava

from datamodules import build_datamodule
from datamodules.contract import collate_pairs
from experiments.common.config import load_config, to_container
from lightning_modules.captioner import CaptionerModule

# Instructions of three token lengths; None = none (model.prompt).
INSTRUCTIONS = ["What changed?", None, "List every object that moved, appeared or disappeared in the scene."]
CAPTIONS = ["the red cube on the left is gone.", "the lighting changed.", "a small blue sphere appears."]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def module(llava_twin):
    torch.manual_seed(0)
    return CaptionerModule(config=to_container(twin_config(llava_twin))).eval()


@pytest.fixture(scope="module")
def hf(llava_twin):
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(llava_twin).eval()


def pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randn(n, 3, 32, 32, generator=g)


def contains(ids: list[int], part: list[int]) -> bool:
    return any(ids[i : i + len(part)] == part for i in range(len(ids) - len(part) + 1))


def test_prompts_follow_each_sample_s_instruction_and_fall_back_to_model_prompt(module):
    prompts = module.prompts(INSTRUCTIONS)
    assert [list(s) for s in prompts[1]] == [s.tolist() for s in module.model.text_segments]
    assert prompts[0] == module.instruction_prompts.chat_prompt.segments(INSTRUCTIONS[0])[0]
    assert len({len(p[2]) for p in prompts}) == 3  # three prompt lengths: the batch is padded
    # Every pair on model.prompt: the model's own segments, no padding, exactly as without instructions.
    assert module.prompts([None, INSTRUCTION]) is None and module.prompts(None) is None


def test_a_batch_of_different_instructions_gives_each_pair_its_alone_loss_and_logits(module):
    before, after = pairs(3)
    ids, mask = module.tokenize(CAPTIONS)
    prompts = module.prompts(INSTRUCTIONS)
    with torch.no_grad():
        loss, logits = module.model(before, after, ids, mask, prompts=prompts)
        sums, tokens, alone = 0.0, 0, []
        for i in range(3):
            n = int(mask[i].sum())
            one = (before[i : i + 1], after[i : i + 1], ids[i : i + 1, :n], mask[i : i + 1, :n])
            alone.append(module.model(*one, prompts=[prompts[i]]))
            assert torch.allclose(logits[i, :n], alone[i][1][0], atol=1e-5), i
            sums, tokens = sums + alone[i][0] * n, tokens + n
            own_loss, own_logits = module.model(*one)  # model.prompt, the model's own segments
            if i == 0:  # the instruction is read: model.prompt instead gives another loss
                assert abs(own_loss - alone[0][0]) > 1e-3
            if i == 1:  # no instruction: model.prompt
                assert torch.allclose(own_logits, alone[1][1], atol=1e-6)
    assert torch.allclose(loss, sums / tokens, atol=1e-6), (loss, sums / tokens)


@pytest.mark.parametrize("generation", [dict(), dict(use_cache=False), dict(num_beams=2)])
def test_batched_generation_with_different_instructions_equals_each_pair_alone(module, generation):
    before, after = pairs(3)
    prompts = module.prompts(INSTRUCTIONS)
    args = dict(max_new_tokens=10, min_new_tokens=4, **generation)
    together, _ = module.model.generate(before, after, prompts=prompts, **args)
    alone = [
        module.model.generate(before[i : i + 1], after[i : i + 1], prompts=[prompts[i]], **args)[0][0]
        for i in range(3)
    ]
    assert together == alone and all(len(ids) >= 4 for ids in together)
    assert module.caption(before, after, instructions=INSTRUCTIONS, **args) == module.decode(alone)


@pytest.mark.parametrize("instruction", [INSTRUCTIONS[0], INSTRUCTIONS[2]])
def test_one_pair_with_its_instruction_equals_llava_onevision(module, hf, llava_twin, instruction):
    """The loss on the assistant turn and the greedy caption with a non-default instruction are HF's."""
    processed = hf_inputs(llava_twin, instruction, seed=5)
    base = processed["pixel_values"][:, 0]  # each image's base-resolution view
    prompts = module.prompts([instruction])
    caption_ids, caption_mask = module.tokenize(["the camera moved to the right."])
    with torch.no_grad():
        loss, _ = module.model(base[0:1], base[1:2], caption_ids, caption_mask, prompts=prompts)
        prompt = processed["input_ids"]
        reference = hf(
            input_ids=torch.cat([prompt, caption_ids], dim=1),
            pixel_values=processed["pixel_values"],
            image_sizes=processed["image_sizes"],
            batch_num_images=processed["batch_num_images"],
            labels=torch.cat([torch.full_like(prompt, -100), caption_ids], dim=1),
        ).loss
        out = hf.generate(
            **processed,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=module.model.eos_token_id,
            pad_token_id=module.tokenizer.pad_token_id,
        )
    assert torch.allclose(loss, reference, atol=1e-5), (loss, reference)
    theirs = out[0, prompt.shape[1] :].tolist()
    if module.model.eos_token_id in theirs:
        theirs = theirs[: theirs.index(module.model.eos_token_id)]
    mine, _ = module.model.generate(base[0:1], base[1:2], prompts=prompts, max_new_tokens=12)
    assert mine == [theirs] and len(theirs) > 3


def test_an_instruction_file_s_instructions_reach_the_user_turn(module, tmp_path):
    """DATA=llava -> collated training batch -> the module's step: each pair's user turn holds its instruction's
    tokens, and the step's loss is the one each pair gets alone with that instruction."""
    mini = make_llava(tmp_path / "llava")
    spec = module.image_spec
    data = to_container(load_config(groups={"data": "llava"}).data)
    data.update(root=str(mini.root), batch_size=4, num_workers=0)
    dm = build_datamodule(data, image_size=spec.size, mean=spec.mean, std=spec.std, seed=7)
    dm.setup("fit")
    train = dm.dataset("train")
    batch = collate_pairs([train.get(i) for i in range(len(train))])
    instructions = batch["instruction"]
    assert len(set(instructions)) == 4
    prompts = module.prompts(instructions)
    for instruction, (_, _, user_tail) in zip(instructions, prompts):
        tokens = module.tokenizer(instruction, add_special_tokens=False)["input_ids"]
        assert contains(user_tail, tokens), instruction
        assert INSTRUCTION not in module.tokenizer.decode(user_tail)
    captions = [c[0] for c in batch["captions"]]
    with torch.no_grad():
        loss, _, _ = module.shared_step(batch, captions)
        sums, tokens = 0.0, 0
        for i, caption in enumerate(captions):
            ids, mask = module.tokenize([caption])
            one, _ = module.model(
                batch["before"][i : i + 1], batch["after"][i : i + 1], ids, mask, prompts=[prompts[i]]
            )
            sums, tokens = sums + one * ids.shape[1], tokens + ids.shape[1]
        without = {k: v for k, v in batch.items() if k != "instruction"}
        default_loss, _, _ = module.shared_step(without, captions)
    assert torch.allclose(loss, sums / tokens, atol=1e-6)
    assert abs(default_loss - loss) > 1e-3


def test_the_tiny_default_model_ignores_instructions():
    """No chat template: ``model.prompt`` after the images for every pair, the numbers of a batch without them."""
    module = make_tiny_module("model.prompt='describe the change:'").eval()
    plain = batch_of(3)
    instructed = {**plain, "instruction": INSTRUCTIONS}
    assert module.prompts(INSTRUCTIONS) is None
    captions = [c[0] for c in plain["captions"]]
    with torch.no_grad():
        assert torch.equal(
            module.shared_step(plain, captions)[0], module.shared_step(instructed, captions)[0]
        )
    assert module.evaluation_step(plain, "val") == module.evaluation_step(instructed, "val")


@pytest.mark.parametrize("generation", [dict(), dict(use_cache=False), dict(num_beams=2)])
def test_left_padding_keeps_absolute_positions(generation):
    """GPT-2's learned position embeddings see a left shift (RoPE does not): with per-pair text segments of
    different lengths, positions must count real tokens only for each pair to get its alone logits and caption."""
    # Room in the tiny LM's position table for the text segments.
    module = make_tiny_module("model.max_caption_tokens=48", "generation.max_new_tokens=16").eval()
    model, batch = module.model, batch_of(3)
    words = [module.tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("the red", "a blue circle")]
    prompts = [([], [], []), (words[0], [], words[1]), ([], words[1], words[0] + words[1])]
    ids, mask = module.tokenize([c[0] for c in batch["captions"]])
    before, after = batch["before"], batch["after"]
    with torch.no_grad():
        _, logits = model(before, after, ids, mask, prompts=prompts)
        for i in range(3):
            n = int(mask[i].sum())
            one = (before[i : i + 1], after[i : i + 1], ids[i : i + 1, :n], mask[i : i + 1, :n])
            assert torch.allclose(logits[i, :n], model(*one, prompts=[prompts[i]])[1][0], atol=1e-5), i
    args = dict(max_new_tokens=6, min_new_tokens=6, **generation)
    together, _ = model.generate(before, after, prompts=prompts, **args)
    alone = [
        model.generate(before[i : i + 1], after[i : i + 1], prompts=[prompts[i]], **args)[0][0]
        for i in range(3)
    ]
    assert together == alone
