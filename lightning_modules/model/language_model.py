"""The causal language model: a registered random-init one (``tiny-gpt2``, ``tiny-qwen2``) built from config
values, or any pretrained ``AutoModelForCausalLM`` by name or local path; optional LoRA (the paper: r=128,
alpha=256).

One name registry, shaped like :func:`mdp.register_backbone`: ``register_language_model`` /
``list_language_models`` / ``build_language_model``. A registered name is built by its factory (random init,
sized by ``model.lm.*``, with the kit's caption tokenizer); any other name is a pretrained model.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])

_LANGUAGE_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_language_model(name: str, *, overwrite: bool = False) -> Callable[[Factory], Factory]:
    """Decorator registering a random-init LM factory under ``name`` (a ``model.lm.name`` value).

    The factory is called as ``fn(*, num_layers, hidden_size, num_heads, vocab_size, max_positions,
    pad_token_id, bos_token_id, eos_token_id) -> nn.Module`` (a ``transformers`` causal LM, float32); the
    captioner trains a caption tokenizer for it on the training captions.
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(
            f"language model names must be non-empty strings without surrounding spaces, got {name!r}"
        )

    def decorator(fn: Factory) -> Factory:
        if name in _LANGUAGE_MODELS and not overwrite:
            raise ValueError(
                f"language model {name!r} is already registered; pass overwrite=True to replace it"
            )
        _LANGUAGE_MODELS[name] = fn
        return fn

    return decorator


def list_language_models() -> list[str]:
    """Sorted registered (random-init) names; any other ``model.lm.name`` is a pretrained model."""
    return sorted(_LANGUAGE_MODELS)


def is_tiny_lm(name: str) -> bool:
    """Whether ``name`` is a registered random-init LM (trained with the kit's caption tokenizer)."""
    return name in _LANGUAGE_MODELS


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """``model.lm.dtype`` -> torch dtype."""
    if name not in _DTYPES:
        raise ValueError(f"model.lm.dtype must be one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


@register_language_model("tiny-gpt2")
def tiny_gpt2(
    *, num_layers: int, hidden_size: int, num_heads: int, vocab_size: int, max_positions: int, **special: int
) -> nn.Module:
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


@register_language_model("tiny-qwen2")
def tiny_qwen2(
    *, num_layers: int, hidden_size: int, num_heads: int, vocab_size: int, max_positions: int, **special: int
) -> nn.Module:
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
    """Build the LM. A registered one uses the given sizes and token ids (float32); a pretrained one ignores
    them and is loaded in ``dtype`` (its trainable weights are put back to float32 by
    :func:`keep_trainable_in_float32`)."""
    if name in _LANGUAGE_MODELS:
        sizes = dict(
            num_layers=num_layers, hidden_size=hidden_size, num_heads=num_heads, vocab_size=vocab_size
        )
        special = dict(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id)
        return _LANGUAGE_MODELS[name](**sizes, max_positions=max_positions, **special)
    try:
        return AutoModelForCausalLM.from_pretrained(name, attn_implementation="sdpa", dtype=dtype)
    except OSError as err:
        near = difflib.get_close_matches(str(name), list(_LANGUAGE_MODELS), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise FileNotFoundError(
            f"cannot load the language model '{name}': {err}.{hint} No hub downloads happen here; put the model "
            "in a local folder (config.json, weights, tokenizer files) and set model.lm.name=/path/to/folder, "
            f"or use one of the random-init tiny LMs {list_language_models()}."
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
