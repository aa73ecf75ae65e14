"""What autograd keeps for backward, per part of the paper-scale model, counted on CPU (no GPU needed):

    .venv/bin/python -m experiments.activation_memory [--tokens 1625] [--layer-tokens 256] [--toy]

One layer of each part is built at real width (a Qwen2-7B decoder layer with LoRA r=128 and its bf16 weights; a
SigLIP-so400m tower layer; MDP over 4 taps of width 1152; the projector) and run forward under CPU bf16 autocast
with ``torch.autograd.graph.saved_tensors_hooks`` recording every tensor saved for backward (parameters excluded,
each storage counted once). Scaled to a pair (``--tokens`` LM tokens, 2 x 729 image tokens) and to all layers,
it gives the activation memory per pair with and without activation checkpointing that ``docs/paper_scale.md``
uses. GPU kernels save somewhat differently (fused attention, cuBLAS): these are estimates, not GPU measurements.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import torch

from experiments.common import cli
from mdp import LLAVA_OV_TOWER

QWEN2_7B_LAYER = dict(
    hidden_size=3584, intermediate_size=18944, num_attention_heads=28, num_key_value_heads=4
)
TOY_LAYER = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
TOY_TOWER = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, image_size=32, patch_size=8)


def saved_bytes(fn: Callable[[], Any], params: set[int]) -> int:
    """Bytes of the tensors autograd saves while ``fn`` runs, storages of ``params`` excluded, each view once."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[(ptr, t.storage_offset(), tuple(t.shape), t.dtype)] = t.numel() * t.element_size()
        return t

    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=torch.bfloat16),
    ):
        fn()
    return sum(seen.values())


def _ptrs(module: torch.nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in module.parameters()}


def lm_layer_bytes_per_token(sizes: dict[str, int], tokens: int, lora_r: int) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=16, num_hidden_layers=1, tie_word_embeddings=True, **sizes)
    config._attn_implementation = "sdpa"
    lm = Qwen2ForCausalLM(config).to(torch.bfloat16)
    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.05, target_modules="all-linear")
    lm = get_peft_model(lm, lora).train()
    for p in lm.parameters():  # the kit's setup: frozen base in bf16, adapters in fp32
        if p.requires_grad:
            p.data = p.data.float()
    body = lm.get_base_model().model
    x = torch.randn(1, tokens, sizes["hidden_size"], dtype=torch.bfloat16, requires_grad=True)
    positions = torch.arange(tokens)[None]
    rotary = body.rotary_emb(x, positions)
    layer = body.layers[0]
    return (
        saved_bytes(lambda: layer(x, position_embeddings=rotary, position_ids=positions), _ptrs(lm)) / tokens
    )


def tower_layer_bytes_per_pair(sizes: dict[str, Any]) -> tuple[float, int]:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(**{**sizes, "num_hidden_layers": 1})
    config._attn_implementation = "sdpa"
    tower = SiglipVisionModel(config).train()
    n = (config.image_size // config.patch_size) ** 2
    x = torch.randn(2, n, config.hidden_size, requires_grad=True)  # the fp32 residual stream (trained tower)
    return saved_bytes(lambda: tower.encoder.layers[0](x, None), _ptrs(tower)), n


def mdp_and_projector_bytes_per_pair(width: int, lm_width: int, n: int, heads: int) -> tuple[int, int]:
    import mdp

    module = mdp.MDP(dim=width, num_layers=4, num_heads=heads, identity_init=True).train()
    feats = [[torch.randn(1, n, width, requires_grad=True) for _ in range(4)] for _ in range(2)]
    mdp_bytes = saved_bytes(lambda: module(*feats), _ptrs(module))
    projector = torch.nn.Sequential(
        torch.nn.Linear(width, lm_width), torch.nn.GELU(), torch.nn.Linear(lm_width, lm_width)
    )
    x = torch.randn(2, n, width, requires_grad=True)
    return mdp_bytes, saved_bytes(lambda: projector(x), _ptrs(projector))


def estimate(*, tokens: int, layer_tokens: int, toy: bool = False) -> dict[str, Any]:
    """Per-pair activation bytes (GiB) of the paper-scale model, with and without activation checkpointing."""
    lm_sizes, tower_sizes = (TOY_LAYER, TOY_TOWER) if toy else (QWEN2_7B_LAYER, LLAVA_OV_TOWER)
    lm_layers, tower_layers = (2, 6) if toy else (28, 26)
    width, lm_width, vocab = tower_sizes["hidden_size"], lm_sizes["hidden_size"], 1024 if toy else 152064
    per_token = lm_layer_bytes_per_token(lm_sizes, layer_tokens, 8 if toy else 128)
    tower_layer, n = tower_layer_bytes_per_pair(tower_sizes)
    mdp_bytes, projector_bytes = mdp_and_projector_bytes_per_pair(width, lm_width, n, 2 if toy else 16)
    gib = 2**30
    caption_logits = (
        129 * vocab * (2 + 4)
    )  # bf16 logits of the caption positions + their fp32 copy for the loss
    kept = {
        "lm_layer_inputs": lm_layers * tokens * lm_width * 2 / gib,  # bf16 residual stream
        "tower_layer_inputs": tower_layers * 2 * n * width * 4 / gib,  # fp32 residual stream
        "mdp": mdp_bytes / gib,
        "projector": projector_bytes / gib,
        "logits": caption_logits / gib,
    }
    without = {
        "lm_layers": lm_layers * tokens * per_token / gib,
        "tower_layers": tower_layers * tower_layer / gib,
        "mdp": mdp_bytes / gib,
        "projector": projector_bytes / gib,
        "logits": caption_logits / gib,
    }
    return {
        "tokens_per_pair": tokens,
        "counted": {
            "lm_layer_bytes_per_token": round(per_token),
            "tower_layer_mib_per_pair": round(tower_layer / 2**20, 1),
            "mdp_mib_per_pair": round(mdp_bytes / 2**20, 1),
            "projector_mib_per_pair": round(projector_bytes / 2**20, 1),
        },
        "with_checkpointing_gib": {
            **{k: round(v, 3) for k, v in kept.items()},
            "kept_total": round(sum(kept.values()), 2),
            # the recomputed LM layer's saved tensors live until its backward is done
            "plus_one_lm_layer_while_recomputed": round(tokens * per_token / gib, 2),
        },
        "without_checkpointing_gib": {
            **{k: round(v, 3) for k, v in without.items()},
            "total": round(sum(without.values()), 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--tokens", type=int, default=1625, help="LM tokens per pair (2 x 730 image + prompt + caption)"
    )
    parser.add_argument(
        "--layer-tokens", type=int, default=256, help="tokens the LM layer is run with (cost)"
    )
    parser.add_argument("--toy", action="store_true", help="toy widths (tests)")
    return cli.run(parser, command, argv, logging=False)


def command(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    print(json.dumps(estimate(tokens=args.tokens, layer_tokens=args.layer_tokens, toy=args.toy), indent=2))


if __name__ == "__main__":
    sys.exit(main())
