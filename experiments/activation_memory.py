"""What autograd keeps for backward, per part of the paper-scale model, counted on CPU (no GPU needed):

    .venv/bin/python -m experiments.activation_memory [--model 7b|0.5b] [--precision bf16-mixed|32-true]
        [--tokens 1625] [--caption-tokens 129] [--layer-tokens 256] [--toy]

One layer of each part is built at real width (a Qwen2-7B or Qwen2-0.5B decoder layer with LoRA r=128, its frozen
weights in bf16 or fp32; a SigLIP-so400m tower layer; MDP over 4 taps of width 1152; the projector) and run forward,
under CPU bf16 autocast for ``bf16-mixed`` or in fp32 for ``32-true``, with ``torch.autograd.graph.saved_tensors_hooks``
recording every tensor saved for backward (parameters excluded, each storage counted once). Scaled to a pair
(``--tokens`` LM tokens, 2 x 729 image tokens) and to all layers, it gives the activation memory per pair with and
without activation checkpointing that ``docs/paper_scale.md`` uses. GPU kernels save somewhat differently (fused
attention, cuBLAS): these are estimates; ``make real-width`` holds the 0.5B / fp32 figures against a measured run.
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
QWEN2_05B_LAYER = dict(hidden_size=896, intermediate_size=4864, num_attention_heads=14, num_key_value_heads=2)
# LM: decoder layer sizes, number of layers, vocabulary (the logits' width)
MODELS = {"7b": (QWEN2_7B_LAYER, 28, 152064), "0.5b": (QWEN2_05B_LAYER, 24, 151936)}
TOY_LAYER = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
TOY_TOWER = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, image_size=32, patch_size=8)


def saved_bytes(fn: Callable[[], Any], params: set[int], *, bf16: bool = True) -> int:
    """Bytes of the storages autograd keeps for backward while ``fn`` runs (under CPU bf16 autocast unless
    ``bf16=False``), storages of ``params`` excluded. Each storage counts once, whole: what stays in memory (counting
    each saved view instead overstated MDP by 21% against the RSS it holds: 588 vs 486 MiB, RSS 512 MiB)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
    ):
        fn()
    return sum(seen.values())


def _ptrs(module: torch.nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in module.parameters()}


def lm_layer_bytes_per_token(sizes: dict[str, int], tokens: int, lora_r: int, *, bf16: bool = True) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=16, num_hidden_layers=1, tie_word_embeddings=True, **sizes)
    config._attn_implementation = "sdpa"
    dtype = torch.bfloat16 if bf16 else torch.float32
    lm = Qwen2ForCausalLM(config).to(dtype)
    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.05, target_modules="all-linear")
    lm = get_peft_model(lm, lora).train()
    for p in lm.parameters():  # the kit's setup: frozen base in model.lm.dtype, adapters in fp32
        if p.requires_grad:
            p.data = p.data.float()
    body = lm.get_base_model().model
    x = torch.randn(1, tokens, sizes["hidden_size"], dtype=dtype, requires_grad=True)
    positions = torch.arange(tokens)[None]
    rotary = body.rotary_emb(x, positions)
    layer = body.layers[0]
    return (
        saved_bytes(
            lambda: layer(x, position_embeddings=rotary, position_ids=positions), _ptrs(lm), bf16=bf16
        )
        / tokens
    )


def tower_layer_bytes_per_pair(sizes: dict[str, Any], *, bf16: bool = True) -> tuple[float, int]:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(**{**sizes, "num_hidden_layers": 1})
    config._attn_implementation = "sdpa"
    tower = SiglipVisionModel(config).train()
    n = (config.image_size // config.patch_size) ** 2
    x = torch.randn(2, n, config.hidden_size, requires_grad=True)  # the fp32 residual stream (trained tower)
    return saved_bytes(lambda: tower.encoder.layers[0](x, None), _ptrs(tower), bf16=bf16), n


def mdp_and_projector_bytes_per_pair(
    width: int, lm_width: int, n: int, heads: int, *, bf16: bool = True
) -> tuple[int, int]:
    import mdp

    module = mdp.MDP(dim=width, num_layers=4, num_heads=heads, identity_init=True).train()
    feats = [[torch.randn(1, n, width, requires_grad=True) for _ in range(4)] for _ in range(2)]
    mdp_bytes = saved_bytes(lambda: module(*feats), _ptrs(module), bf16=bf16)
    projector = torch.nn.Sequential(
        torch.nn.Linear(width, lm_width), torch.nn.GELU(), torch.nn.Linear(lm_width, lm_width)
    )
    x = torch.randn(2, n, width, requires_grad=True)
    return mdp_bytes, saved_bytes(lambda: projector(x), _ptrs(projector), bf16=bf16)


def estimate(
    *,
    tokens: int,
    layer_tokens: int,
    toy: bool = False,
    model: str = "7b",
    precision: str = "bf16-mixed",
    caption_tokens: int = 129,
) -> dict[str, Any]:
    """Per-pair activation bytes (GiB) of the paper-scale model (LM ``model``: ``7b`` or ``0.5b``), with and without
    activation checkpointing, under ``precision`` (``bf16-mixed``: frozen LM in bf16, autocast; ``32-true``: fp32)."""
    (lm_sizes, lm_layers, vocab), tower_sizes, tower_layers = MODELS[model], LLAVA_OV_TOWER, 26
    if toy:  # tests
        lm_sizes, lm_layers, vocab, tower_sizes, tower_layers = TOY_LAYER, 2, 1024, TOY_TOWER, 6
    bf16, width, lm_width = precision == "bf16-mixed", tower_sizes["hidden_size"], lm_sizes["hidden_size"]
    per_token = lm_layer_bytes_per_token(lm_sizes, layer_tokens, 8 if toy else 128, bf16=bf16)
    tower_layer, n = tower_layer_bytes_per_pair(tower_sizes, bf16=bf16)
    mdp_bytes, projector_bytes = mdp_and_projector_bytes_per_pair(
        width, lm_width, n, 2 if toy else 16, bf16=bf16
    )
    gib, lm_bytes = 2**30, 2 if bf16 else 4
    caption_logits = (
        caption_tokens * vocab * (lm_bytes + 4 if bf16 else 4)
    )  # bf16 + an fp32 copy, or fp32 once
    kept = {
        "lm_layer_inputs": lm_layers * tokens * lm_width * lm_bytes / gib,  # the LM's residual stream
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
        "model": "toy" if toy else model,
        "precision": precision,
        "tokens_per_pair": tokens,
        "caption_tokens": caption_tokens,
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
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="7b", help="the LM: Qwen2-7B or Qwen2-0.5B"
    )
    parser.add_argument("--precision", choices=("bf16-mixed", "32-true"), default="bf16-mixed")
    parser.add_argument("--caption-tokens", type=int, default=129, help="caption positions with logits")
    parser.add_argument("--toy", action="store_true", help="toy widths (tests)")
    return cli.run(parser, command, argv, logging=False)


def command(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    result = estimate(
        tokens=args.tokens,
        layer_tokens=args.layer_tokens,
        toy=args.toy,
        model=args.model,
        precision=args.precision,
        caption_tokens=args.caption_tokens,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
