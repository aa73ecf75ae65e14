"""Export a trained checkpoint for use without the kit: ``make export CKPT=<ckpt> OUT=<dir>``.

OUT must be new or empty (``FORCE=1`` / ``--force`` replaces an earlier export there); the files are written
into a temporary folder beside it that is renamed to OUT at the end, so OUT never mixes two exports. Writes:

- ``lm_adapter/``: the LoRA adapters as a peft folder (``save_pretrained``; ``PeftModel.from_pretrained`` loads it).
  Trained from ``model.init_from``, its tensor names and target modules address the language model inside
  ``LlavaOnevisionForConditionalGeneration``, so it loads onto the LLaVA-OneVision base as a whole. Without LoRA
  the trained LM is written as ``lm/`` (``save_pretrained``).
- ``vision_tower.safetensors``, ``mdp.safetensors``, ``projector.safetensors`` (``linear_1`` / ``linear_2``, and
  ``image_newline`` when there is one): the trained weights, named as transformers / mdp name them.
- ``tokenizer/``: the tokenizer (``AutoTokenizer.from_pretrained``); a tiny LM's random base goes to ``lm/``.
- ``m3diff.json``: what connects them (MDP config, tapped layers, image spec, prompt layout, base model).
- ``README.md``: how to load them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from experiments.common import cli
from experiments.common.checkpoints import load_module
from experiments.common.outputs import OutputFolder, truthy
from lightning_modules.model.language_model import is_tiny_lm

MARKER = "m3diff.json"  # what makes a folder an export of this command (FORCE=1 replaces only such a folder)
_LORA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def export(ckpt: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """Write the export of ``ckpt`` to ``out`` whole (:class:`~experiments.common.outputs.OutputFolder`: a
    non-empty OUT is refused unless ``force`` and it holds an earlier export, which is then replaced)."""
    with OutputFolder(out, force=force, marker=MARKER) as folder:  # checked before the model is loaded
        write_export(load_module(ckpt).eval(), folder.path)
    return folder.out


def write_export(module: Any, out: Path) -> None:
    """The files of the export of a loaded captioner into the (empty) folder ``out``."""
    model, config = module.model, module.config
    init_from = config["model"].get("init_from")
    lm_dir = _export_lm(
        model.lm, out, init_from=init_from, random_base=is_tiny_lm(config["model"]["lm"]["name"])
    )
    module.tokenizer.save_pretrained(out / "tokenizer")
    chat = module.instruction_prompts.chat_prompt
    if (
        chat is not None
    ):  # the template the prompt was rendered with (the folder's processor's or tokenizer's)
        (out / "chat_template.jinja").write_text(chat.template.text)
    save_file(_contiguous(model.backbone.model.state_dict()), out / "vision_tower.safetensors")
    if model.mdp is not None:
        save_file(_contiguous(model.mdp.state_dict()), out / "mdp.safetensors")
    projector = {
        "linear_1.weight": model.projector[0].weight,
        "linear_1.bias": model.projector[0].bias,
        "linear_2.weight": model.projector[2].weight,
        "linear_2.bias": model.projector[2].bias,
    }
    if model.image_newline is not None:
        projector["image_newline"] = model.image_newline
    if model.segment is not None:
        projector["segment"] = model.segment
    save_file(_contiguous(projector), out / "projector.safetensors")
    meta = {
        "base_model": init_from or config["model"]["lm"]["name"],
        "init_from": init_from,
        "backbone": {"name": config["backbone"]["name"], "layers": list(model.backbone.layers)},
        "image_spec": dataclasses.asdict(model.backbone.spec),
        "mdp": model.mdp.config.to_dict() if model.mdp is not None else None,
        "text_segments": [s.tolist() for s in model.text_segments],
        "eos_token_id": model.eos_token_id,
        "token_pool": model.token_pool,
        "lm": lm_dir,
        "prompt": config["model"]["prompt"],
        "chat": None
        if chat is None
        else {
            "template": "chat_template.jinja",
            "source": chat.template.source,
            "typed_content": chat.typed,
            "system_prompt": chat.system_prompt,
        },
        "max_new_tokens": config["generation"]["max_new_tokens"],
        "lm_dtype": config["model"]["lm"].get("dtype", "float32"),
        "base_dtype": stored_dtype(init_from) if init_from else None,
    }
    (out / "README.md").write_text(_readme(meta))
    (out / MARKER).write_text(json.dumps(meta, indent=2) + "\n")  # last: a folder with it is a whole export


def stored_dtype(folder: str | Path) -> str | None:
    """The dtype a transformers folder's config says its weights are stored in (None when it does not say)."""
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    return config.get("dtype") or config.get("torch_dtype")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in state.items()}


def _export_lm(lm: Any, out: Path, *, init_from: str | None, random_base: bool) -> str:
    if not hasattr(lm, "peft_config"):
        lm.save_pretrained(out / "lm")
        return "lm"
    folder = out / "lm_adapter"
    lm.save_pretrained(folder)
    if (
        random_base
    ):  # a tiny LM's random base exists only in the checkpoint: the adapter alone would be useless
        lm.get_base_model().save_pretrained(out / "lm")
    if init_from:
        _readdress_to_llava(folder, init_from)
    return "lm_adapter"


def _readdress_to_llava(folder: Path, init_from: str) -> None:
    """Adapter names of the kit's causal-LM view (``model.layers.…``) -> the language model inside
    LLaVA-OneVision (``model.language_model.layers.…``), and target modules limited to that language model (the
    SigLIP tower has ``q_proj`` / ``k_proj`` / ``v_proj`` too, which the adapter must not touch)."""
    weights = folder / "adapter_model.safetensors"
    state = load_file(weights)
    moved = {
        k.replace("base_model.model.model.", "base_model.model.model.language_model.", 1): v
        for k, v in state.items()
    }
    save_file(moved, weights)
    config_path = folder / "adapter_config.json"
    adapter = json.loads(config_path.read_text())
    targets = adapter["target_modules"]
    # peft may store "all-linear" resolved as full module paths; keep the layer names.
    names = sorted({t.rsplit(".", 1)[-1] for t in targets} if isinstance(targets, list) else _LORA_NAMES)
    adapter["target_modules"] = rf"model\.language_model\..*\.({'|'.join(names)})"
    adapter["base_model_name_or_path"] = str(init_from)
    config_path.write_text(json.dumps(adapter, indent=2))


# The README's loading and generation code for a run started from LLaVA-OneVision (model.init_from): run as written
# it gives the kit's greedy caption token for token (tests/test_half_precision.py runs it without the kit).
_LLAVA_CODE = """```python
import json
from pathlib import Path

import torch
from peft import PeftModel
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoTokenizer, LlavaOnevisionForConditionalGeneration

import mdp

out, base = Path("{this folder}"), "@BASE@"
meta = json.loads((out / "m3diff.json").read_text())

# The frozen language model in the dtype the kit ran it in; the trained parts in float32, as trained: widened here
# (exact), then overwritten with this folder's float32 files.
lm_dtype = getattr(torch, meta["lm_dtype"])
llava = LlavaOnevisionForConditionalGeneration.from_pretrained(base, dtype=lm_dtype).eval()
llava.model.vision_tower.float()
llava.model.multi_modal_projector.float()
llava.model.image_newline.data = llava.model.image_newline.data.float()
# strict=False: the kit kept the tower's layers up to its deepest tap (the rest are unused)
llava.model.vision_tower.load_state_dict(load_file(out / "vision_tower.safetensors"), strict=False)
projector = load_file(out / "projector.safetensors")
with torch.no_grad():
    llava.model.image_newline.copy_(projector.pop("image_newline"))
llava.model.multi_modal_projector.load_state_dict(projector)
model = PeftModel.from_pretrained(llava, out / "lm_adapter").eval()  # LoRA on the language model, float32
difference = mdp.MDP(config=mdp.MDPConfig(**meta["mdp"])).eval()
difference.load_state_dict(load_file(out / "mdp.safetensors"))
tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
image_processor = AutoImageProcessor.from_pretrained(base)  # LLaVA-OneVision's: square padding, resize, normalise


chat = meta["chat"]  # the chat template the kit rendered its prompt with, and how
template = (out / chat["template"]).read_text()


def prompt_ids(instruction):
    \"\"\"The system turn, then the user turn (both images, then the instruction), rendered by the chat template
    with the generation prompt and split at the two images: the token ids before, between and after them.\"\"\"
    turns = ([("system", 0, chat["system_prompt"])] if chat["system_prompt"] else []) + [("user", 2, instruction)]
    if chat["typed_content"]:  # a processor's template: typed content, as processor.apply_chat_template takes it
        messages = [{"role": r, "content": [{"type": "image"}] * n + [{"type": "text", "text": t}]} for r, n, t in turns]
    else:  # a template written for text content: an "<image>" line per image, then the text
        messages = [{"role": r, "content": "<image>\\n" * n + t} for r, n, t in turns]
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    return [tokenizer(part, add_special_tokens=False)["input_ids"] for part in text.split("<image>")]


@torch.no_grad()
def caption(before, after, instruction=meta["prompt"], max_new_tokens=meta["max_new_tokens"]):
    \"\"\"Greedy caption of the change from image file `before` to `after`: (text, token ids).\"\"\"
    pair = [[Image.open(before).convert("RGB"), Image.open(after).convert("RGB")]]  # one sample, two images
    pixels = image_processor(pair, return_tensors="pt")["pixel_values"].flatten(0, 1)  # (2, 3, S, S)
    hidden = llava.model.vision_tower(pixels.float(), output_hidden_states=True).hidden_states
    taps = [hidden[k + 1] for k in meta["backbone"]["layers"]]  # tower layer k's output (no final norm)
    fused = difference([t[:1] for t in taps], [t[1:] for t in taps])  # MDP: difference-aware tokens
    newline = llava.model.image_newline[None, None]
    blocks = [torch.cat([llava.model.multi_modal_projector(x), newline], dim=1) for x in (fused.before, fused.after)]
    table = llava.get_input_embeddings()
    text = [table(torch.tensor([ids], dtype=torch.long)) for ids in prompt_ids(instruction)]
    embeds = torch.cat([text[0], blocks[0].to(lm_dtype), text[1], blocks[1].to(lm_dtype), text[2]], dim=1)
    end = meta["eos_token_id"]  # the chat template's end of turn
    ids = model.generate(
        inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=end,
        pad_token_id=tokenizer.pad_token_id,
    )[0].tolist()
    ids = ids[: ids.index(end)] if end in ids else ids
    return tokenizer.decode(ids, skip_special_tokens=True).strip(), ids


# text, ids = caption("before.png", "after.png")
```"""


def _readme(meta: dict[str, Any]) -> str:
    layers = meta["backbone"]["layers"]
    dtypes = (
        f"Dtypes: `vision_tower.safetensors`, `mdp.safetensors`, `projector.safetensors` and `lm_adapter/` are "
        f"float32 (the trained master weights). The base `{meta['base_model']}` stores "
        f"{meta['base_dtype'] or 'its own dtype'}; the kit ran its frozen language model in {meta['lm_dtype']} "
        "and everything it trained in float32. Load the base in that LM dtype, widen the trained parts to float32 "
        "and load these files over them, as below: the result computes what the kit computed."
    )
    if meta["init_from"]:
        load = (
            _LLAVA_CODE.replace("@BASE@", meta["init_from"])
            + f"""

MDP sits between the tower and the projector, which LLaVA-OneVision's own forward does not know about: the code
taps the tower at layers {layers}, fuses the two images' taps with MDP, projects each image's tokens, appends
`image_newline` and puts the blocks where the chat-template prompt has its two `<image>` placeholders. Images go
through the base folder's own image processor, which for several images per prompt pads each to a square in its
mean colour and resizes it (the kit does the same); the number of tokens per image follows from the tower."""
        )
    else:
        load = f"""The LM: `AutoModelForCausalLM.from_pretrained(base)` with `base` the folder `lm/` (a tiny LM, or one
trained without LoRA: complete) or `{meta["base_model"]}`, then, with LoRA, `PeftModel.from_pretrained(lm,
"<this folder>/lm_adapter")`; its tokenizer is `tokenizer/`. The tower's weights (`vision_tower.safetensors`) are
those of backbone `{meta["backbone"]["name"]}` (its model's state dict); MDP's load into
`mdp.MDP(config=mdp.MDPConfig(**meta["mdp"]))`, the projector's into `Sequential(Linear, GELU, Linear)`
(`linear_1`, `linear_2`). Taps: layers {layers}."""
    chat_file = "`chat_template.jinja`, " if meta["chat"] else ""
    return f"""# M3Diff export

Trained with the M3Diff kit from base `{meta["base_model"]}`. Files: `{meta["lm"]}/`, `tokenizer/`, {chat_file}
`vision_tower.safetensors`, `mdp.safetensors`, `projector.safetensors`, `m3diff.json` (MDP config, taps, image
spec, prompt and its token layout, generation length, dtypes).

{dtypes}

{load}
"""


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--ckpt", default="", help="checkpoint (CKPT=)")
    parser.add_argument("--out", default="", help="output folder (OUT=); must be new or empty, see --force")
    cli.add_force_argument(parser, "an earlier export in OUT")
    return cli.run(parser, command, argv, logging=False)


def command(args: argparse.Namespace) -> None:
    cli.require(args, ("ckpt", "out"), "make export CKPT=<ckpt> OUT=<dir> [FORCE=1]")
    out = export(args.ckpt, args.out, force=truthy(args.force))
    print(f"exported to {out} (see {out / 'README.md'})")


if __name__ == "__main__":
    sys.exit(main())
