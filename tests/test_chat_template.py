"""One rule for the chat template (lightning_modules/model/prompt.py): the processor's when the folder has one, else
the tokenizer's, or ``model.chat_template``'s choice; the system turn is ``model.system_prompt``; a LLaVA-OneVision
folder without a template, an instruction holding ``<image>`` or a template that cannot place two images is one line
on stderr, exit status 2 (never the plain layout)."""

import shutil

import pytest
import torch
from support.llava_inputs import INSTRUCTION, hf_inputs, twin_config

from experiments import train
from experiments.common.config import ConfigError, to_container
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.prompt import ChatTemplateError

pytestmark = pytest.mark.usefixtures("one_thread")

SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


@pytest.fixture(scope="module")
def released(llava_twin, tmp_path_factory):
    """The layout of folders released with transformers 4: the processor's template in chat_template.json, the
    tokenizer's own (Qwen2-Instruct's) in tokenizer_config.json."""
    from support.llava_twin import save_processor

    folder = tmp_path_factory.mktemp("released")
    shutil.copytree(llava_twin, folder, dirs_exist_ok=True)
    return save_processor(folder, legacy=True)


def build(folder, *overrides) -> CaptionerModule:
    torch.manual_seed(0)
    return CaptionerModule(config=to_container(twin_config(folder, *overrides))).eval()


def prompt_text(module: CaptionerModule) -> str:
    text_0, text_1, text_2 = (module.tokenizer.decode(s.tolist()) for s in module.model.text_segments)
    return f"{text_0}<image>{text_1}<image>{text_2}"


def test_the_processor_s_template_comes_first_then_the_tokenizer_s(released, llava_twin_processor):
    assert twin_config(llava_twin_processor).model.chat_template == "processor"
    assert (
        twin_config(released).model.chat_template == "processor"
    )  # chat_template.json over tokenizer_config's
    with_processor, with_tokenizer = build(released), build(released, "model.chat_template=tokenizer")
    assert with_tokenizer.config["model"]["chat_template"] == "tokenizer"
    # With the system turn sent, Qwen2-Instruct's template and the conversion script's give the same prompt.
    expected = (
        f"{SYSTEM_TURN}<|im_start|>user\n<image>\n<image>\n{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompt_text(with_processor) == prompt_text(with_tokenizer) == expected
    assert with_processor.model.eos_token_id == with_processor.tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_without_a_system_prompt_the_prompt_is_processor_apply_chat_template_s(llava_twin_processor, hf):
    """model.system_prompt=null: no system turn (the conversion script's template adds none); step-0 greedy ids
    equal transformers' for that prompt too."""
    from transformers import AutoProcessor

    module = build(llava_twin_processor, "model.system_prompt=null")
    processor = AutoProcessor.from_pretrained(llava_twin_processor)
    user = {
        "role": "user",
        "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": INSTRUCTION}],
    }
    text = processor.apply_chat_template([user], add_generation_prompt=True)
    assert prompt_text(module) == text and not text.startswith("<|im_start|>system")
    inputs = hf_inputs(llava_twin_processor, INSTRUCTION, seed=3, text=text)
    eos = module.model.eos_token_id
    with torch.no_grad():
        out = hf.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=eos, pad_token_id=0)
    theirs = out[0, inputs["input_ids"].shape[1] :].tolist()
    theirs = theirs[: theirs.index(eos)] if eos in theirs else theirs
    base = inputs["pixel_values"][:, 0]
    mine, _ = module.model.generate(base[0:1], base[1:2], max_new_tokens=12)
    assert mine == [theirs] and len(theirs) > 3


@pytest.fixture(scope="module")
def hf(llava_twin):
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(llava_twin).eval()


def test_a_folder_without_a_chat_template_is_a_one_line_error(llava_twin, tmp_path, capsys):
    folder = tmp_path / "no_template"
    shutil.copytree(llava_twin, folder)
    (folder / "chat_template.jinja").unlink()
    assert train.main(["--args", f"model.init_from={folder}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"config error: model.init_from={folder}: no chat template"
    )


def test_a_chosen_template_the_folder_lacks_is_a_config_error(released, tmp_path):
    folder = tmp_path / "tokenizer_only"
    shutil.copytree(released, folder)
    (folder / "chat_template.json").unlink()
    assert twin_config(folder).model.chat_template == "tokenizer"
    with pytest.raises(ConfigError, match="model.chat_template=processor: .* has no processor chat template"):
        twin_config(folder, "model.chat_template=processor")


def test_an_instruction_with_an_image_placeholder_says_so(llava_twin_processor, capsys):
    args = [f"model.init_from={llava_twin_processor}", "model.prompt='<image> What changed?'"]
    assert train.main(["--args", " ".join(args), "model.lora.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "contains '<image>': the kit places the two images itself" in err


def test_a_template_that_places_no_images_is_named(llava_twin, tmp_path):
    folder = tmp_path / "textless"
    shutil.copytree(llava_twin, folder)
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['role'] }}: ...\n{% endfor %}")
    with pytest.raises(
        ChatTemplateError, match=r"processor's chat template \(.*chat_template.jinja\) places no two"
    ):
        build(folder)
