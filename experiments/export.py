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
    }
    (out / "README.md").write_text(_readme(meta))
    (out / MARKER).write_text(json.dumps(meta, indent=2) + "\n")  # last: a folder with it is a whole export


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


def _readme(meta: dict[str, Any]) -> str:
    layers = meta["backbone"]["layers"]
    if meta["init_from"]:
        load = f'''```python
import json

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlavaOnevisionForConditionalGeneration

import mdp

out, base = "{{this folder}}", "{meta["init_from"]}"
model = LlavaOnevisionForConditionalGeneration.from_pretrained(base)
model.model.vision_tower.load_state_dict(load_file(f"{{out}}/vision_tower.safetensors"), strict=False)
projector = load_file(f"{{out}}/projector.safetensors")
with torch.no_grad():
    model.model.image_newline.copy_(projector.pop("image_newline"))
model.model.multi_modal_projector.load_state_dict(projector)
model = PeftModel.from_pretrained(model, f"{{out}}/lm_adapter")  # LoRA on the language model
meta = json.load(open(f"{{out}}/m3diff.json"))
difference = mdp.MDP(config=mdp.MDPConfig(**meta["mdp"]))
difference.load_state_dict(load_file(f"{{out}}/mdp.safetensors"))
```

MDP sits between the tower and the projector, which LLaVA-OneVision's own forward does not know about: tap the
tower at layers {layers} (layer k = `hidden_states[k + 1]` of `vision_tower(pixels, output_hidden_states=True)`),
run `difference(taps_before, taps_after)`, project `.before` and `.after` with `multi_modal_projector`, append
`image_newline` to each, and put them where the two `<image>` placeholders of the chat-template prompt are (the
kit's layout: `text_segments` in `m3diff.json`, 729 + 1 tokens per image).'''
    else:
        load = f"""The LM: `AutoModelForCausalLM.from_pretrained(base)` with `base` the folder `lm/` (a tiny LM, or one
trained without LoRA: complete) or `{meta["base_model"]}`, then, with LoRA, `PeftModel.from_pretrained(lm,
"<this folder>/lm_adapter")`; its tokenizer is `tokenizer/`. The tower's weights (`vision_tower.safetensors`) are
those of backbone `{meta["backbone"]["name"]}` (its model's state dict); MDP's load into
`mdp.MDP(config=mdp.MDPConfig(**meta["mdp"]))`, the projector's into `Sequential(Linear, GELU, Linear)`
(`linear_1`, `linear_2`). Taps: layers {layers}."""
    return f"""# M3Diff export

Trained with the M3Diff kit from base `{meta["base_model"]}`. Files: `{meta["lm"]}/`, `tokenizer/`,
`vision_tower.safetensors`, `mdp.safetensors`, `projector.safetensors`, `m3diff.json` (MDP config, taps, image
spec, prompt layout).

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
