"""The causal language model: a tiny random-init GPT-2 / Qwen2 built from config values, or any pretrained
``AutoModelForCausalLM`` by name or local path; optional LoRA (the paper: r=128, alpha=256)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

TINY_LMS = ("tiny-gpt2", "tiny-qwen2")


def is_tiny_lm(name: str) -> bool:
    return name in TINY_LMS


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """``model.lm.dtype`` -> torch dtype."""
    if name not in _DTYPES:
        raise ValueError(f"model.lm.dtype must be one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


def build_language_model(
    *,
    name: str,
    num_layers: int,
    hidden_size: int,
    num_heads: int,
    vocab_size: int,
    max_positions: int,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Build the LM. Tiny LMs use the given sizes and token ids (float32); a pretrained one ignores them and is
    loaded in ``dtype`` (its trainable weights are put back to float32 by :func:`keep_trainable_in_float32`)."""
    special = dict(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    if name == "tiny-gpt2":
        config = GPT2Config(
            vocab_size=vocab_size,
            n_positions=max_positions,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            # GPT-2's tanh-approximated GELU as one fused kernel; the default "gelu_new" is the same function
            # as ~8 elementwise ops in Python (fwd + bwd ~4% of the default model's CPU step).
            activation_function="gelu_pytorch_tanh",
            **special,
        )
        config._attn_implementation = "sdpa"  # fused attention (PyTorch SDPA) on CPU and GPU
        return GPT2LMHeadModel(config)
    if name == "tiny-qwen2":
        config = Qwen2Config(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 4,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads,
            max_position_embeddings=max_positions,
            tie_word_embeddings=True,
            **special,
        )
        config._attn_implementation = "sdpa"
        return Qwen2ForCausalLM(config)
    try:
        return AutoModelForCausalLM.from_pretrained(name, attn_implementation="sdpa", dtype=dtype)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load the language model '{name}': {err}. No hub downloads happen here; put the model "
            "in a local folder (config.json, weights, tokenizer files) and set model.lm.name=/path/to/folder, "
            f"or use one of the random-init tiny LMs {list(TINY_LMS)}."
        ) from None


def lora_alpha(lora_cfg: Mapping[str, Any]) -> int:
    """``model.lora.alpha``, or 2 x ``model.lora.r`` when it is null (the paper's 256 at r=128): LoRA's update is
    scaled by alpha / r, so r changed alone keeps that scale."""
    alpha = lora_cfg.get("alpha")
    return int(alpha) if alpha is not None else 2 * int(lora_cfg["r"])


def apply_lora(
    lm: nn.Module, *, r: int, alpha: int, dropout: float, target_modules: Sequence[str] | None
) -> nn.Module:
    """Wrap ``lm`` with LoRA adapters (peft); only the adapters of the LM stay trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules) if target_modules else "all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(lm, config)


def keep_trainable_in_float32(module: nn.Module) -> None:
    """Trainable weights in float32 (AdamW's master copy; bf16-mixed autocasts the matmuls); frozen ones keep
    the dtype they were loaded in."""
    for p in module.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def set_grad_checkpointing(lm: nn.Module, enable: bool) -> None:
    """transformers' activation checkpointing of the decoder layers (also through a peft wrapper)."""
    from mdp.hf_adapter import set_hf_checkpointing

    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    set_hf_checkpointing(base, enable)


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def lm_kwargs_from_config(lm_cfg: Mapping[str, Any], tokenizer: Any, max_positions: int) -> dict[str, Any]:
    """Keyword arguments of :func:`build_language_model` from the ``model.lm`` section and a tokenizer."""
    return dict(
        name=lm_cfg["name"],
        num_layers=lm_cfg["num_layers"],
        hidden_size=lm_cfg["hidden_size"],
        num_heads=lm_cfg["num_heads"],
        vocab_size=max(int(lm_cfg["vocab_size"]), len(tokenizer)),
        max_positions=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
