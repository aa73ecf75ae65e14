"""Every key the kit reads: its type, its default and what it does (OmegaConf structured configs).

To add a key: add a field, with its comment, to the section's dataclass below (``data`` keys: the dataclass
beside the DataModule, e.g. ``SyntheticConfig`` in ``datamodules/synthetic/datamodule.py``). YAML files and
``key=value`` overrides may only set keys that exist here, with values of the declared type.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

import mdp
from datamodules.base import PairDataConfig


@dataclass
class BackboneConfig:
    name: str = "siglip-tiny"  # a name from mdp.list_backbones(), or timm:<name> / open_clip:<name>
    pretrained: str | None = None  # open_clip tag, hf-hub:<repo>, or a local weights file; null = random init
    # 0-based encoder blocks tapped for MDP (negative: from the end); the last one is the MDP-off baseline's input.
    layers: list[int] = field(default_factory=lambda: [1, 3, 5])
    image_size: int = 128  # input resolution (both images)
    freeze: bool = False  # true: backbone weights are not trained
    grad_checkpointing: bool = (
        False  # recompute the backbone's blocks in backward: less memory, ~1/3 more compute
    )


def _mdp_section() -> type:
    """``enabled`` + the fields of :class:`mdp.MDPConfig` (documented there) except the derived ``dim`` (the
    backbone width) and ``num_layers`` (len(backbone.layers)). Its ``Literal`` choices are checked by
    ``MDPConfig`` itself."""
    hints = typing.get_type_hints(mdp.MDPConfig)
    fields = [("enabled", bool, field(default=True))]  # false: last-layer tokens straight to the projector
    for f in dataclasses.fields(mdp.MDPConfig):
        if f.name in MDP_KIT_DEFAULTS:
            fields.append((f.name, *MDP_KIT_DEFAULTS[f.name]))
        elif f.name not in MDP_DERIVED:
            hint = str if typing.get_origin(hints[f.name]) is typing.Literal else hints[f.name]
            fields.append((f.name, hint, field(default=f.default)))
    return dataclasses.make_dataclass("MDPSection", fields)


MDP_DERIVED = ("dim", "num_layers")
# identity_init: null = on with model.init_from (the pretrained projector first sees what it was trained on), off
# otherwise; true / false force it.
MDP_KIT_DEFAULTS = {"identity_init": (bool | None, field(default=None))}
MDPSection = _mdp_section()


@dataclass
class LMConfig:
    name: str = "tiny-gpt2"  # tiny-gpt2 | tiny-qwen2 (random init, sized below) or a HF name / local folder
    num_layers: int = 3
    hidden_size: int = 256
    num_heads: int = 4
    vocab_size: int = 1024  # tiny LMs: size of the caption tokenizer trained on the training captions
    tokenizer_captions: int = 20000  # how many training pairs' references train that tokenizer
    # float32 | bfloat16: a pretrained LM's frozen weights (trainable ones stay float32); bfloat16 halves a frozen
    # base under LoRA (the LM then runs in bf16).
    dtype: str = "float32"
    grad_checkpointing: bool = (
        False  # recompute the LM's decoder layers in backward (transformers' own switch)
    )


@dataclass
class LoRAConfig:
    enabled: bool = False
    r: int = 128
    # LoRA's scale is alpha / r. null = 2 x r (256 at r=128, the paper's), so changing r alone keeps the scale;
    # resolved at the run's start (experiments/common/assembly.py) and saved as a number.
    alpha: int | None = None
    dropout: float = 0.05
    target_modules: list[str] | None = None  # null = the LM's attention and MLP projections


@dataclass
class ModelConfig:
    # A LLaVA-OneVision folder in HF format (llava-onevision-qwen2-7b-ov-hf layout): its vision tower (sets
    # backbone.name / pretrained / image_size and model.token_pool=1), projector, image_newline, LM and tokenizer;
    # MDP goes on top. null: backbone.* and model.lm.* as set.
    init_from: str | None = None
    init_weights: bool = (
        True  # false: init_from's architecture and tokenizer with random weights (make gpu-check)
    )
    projector_hidden: int | None = None  # hidden width of the 2-layer MLP projector; null = the LM width
    # Average-pool the (MDP-fused) token grid by this factor per side before the LM. 1 (every token): a 2x2
    # pool (4x fewer prefix tokens, a 1.5x faster CPU step, experiments/BENCHMARKS.md) blurs the small objects
    # the local changes are about: the default run's CIDEr 0.96 -> 1.34, right category 30.7 -> 41.6 % with 1.
    token_pool: int = 1
    # A 2-D position signal added to each projected image token (both images alike): none | sincos (fixed 2-D
    # sine-cosine, as large as the tokens) | learned (starts as sincos). The LM's own position embeddings are ~30x
    # smaller than a projected image token, so without it *where* barely reaches the caption (docs/experiments.md).
    image_positions: str = "none"
    # The instruction: after both images (plain layout), or the user turn's text after its two images with a chat
    # template (instruct LMs, init_from), where a sample's own `instruction` (DATA=llava) replaces it.
    prompt: str = ""
    # Which chat template renders the prompt (lightning_modules/model/prompt.py; docs/paper_scale.md): null = the
    # processor's when the folder has one (chat_template.jinja / chat_template.json / processor_config.json), else
    # the tokenizer's; processor | tokenizer = that one. With init_from the run's config.yaml records the one used.
    chat_template: str | None = None
    # The system turn sent before the user turn with a chat template: LLaVA-OneVision was trained with this one
    # (transformers' conversion check prompt writes it; Qwen2-Instruct's template adds it when none is sent).
    # null: no system turn (a template's own default, if any, applies).
    system_prompt: str | None = "You are a helpful assistant."
    # Captions longer than this many tokens (end token included) are cut in training; null = the longest training
    # reference, measured with the run's tokenizer at start (nothing is cut; the start log says how long).
    max_caption_tokens: int | None = None
    freeze_lm: bool = False
    lm: LMConfig = field(default_factory=LMConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)


@dataclass
class OptimConfig:
    lr_backbone: float = 3.0e-4
    lr_mdp: float = 6.0e-4  # MDP + projector
    lr_lm: float = 6.0e-4
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio


@dataclass
class GenerationConfig:
    num_beams: int = 1  # 1 = greedy
    # Generation stops after this many tokens (a caption cut there is counted: val/cut_captions); null = the
    # longest training reference's length in tokens, as model.max_caption_tokens.
    max_new_tokens: int | None = None
    length_penalty: float = 1.0
    use_cache: bool = True


@dataclass
class MetricsConfig:
    monitor: str = "CIDEr"  # picks the best checkpoint (val/<monitor>)
    spice: bool = False  # true only if SPICE's Stanford CoreNLP models are already present
    num_panels: int = 4  # validation pairs shown in TensorBoard each epoch
    change_id: bool = True  # the embedded benchmark's change-identification score


@dataclass
class CheckpointConfig:
    save_last: bool = True
    save_top_k: int = 1
    every_n_train_steps: int = 200  # also save last.ckpt every N steps: a killed run loses at most N steps


@dataclass
class TrainerConfig:
    """Passed to ``lightning.Trainer`` unchanged; any other ``Trainer`` argument may be set as well."""

    accelerator: str = "cpu"
    devices: Any = 1  # int, "auto", or a list of device ids
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | int = "32-true"
    max_steps: int = -1
    max_epochs: int | None = None
    max_time: str | None = None  # "DD:HH:MM:SS"
    val_check_interval: int | float | None = (
        None  # int: every N training batches; float: fraction of an epoch
    )
    check_val_every_n_epoch: int | None = 1  # null: validate by val_check_interval (an int) alone
    limit_val_batches: int | float | None = None
    num_sanity_val_steps: int = 0
    # Norm clipping (null / 0: off). AdamW is torch's fused kernel, except with clipping under 16-mixed / bf16-mixed
    # (conf/trainer gpu, ddp, fsdp): Lightning then unscales and clips before the step, which the fused kernel
    # does not allow, so the optimizer is foreach (lightning_modules/captioner.py adamw_implementation). Under FSDP
    # the norm is FSDP's own clip_grad_norm_ over all shards.
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True
    deterministic: bool | None = False
    benchmark: bool | None = None


@dataclass
class RunConfig:
    # conf/<group>/<choice>.yaml picked for each group (BACKBONE=, DATA=, an experiment's defaults).
    defaults: dict[str, str] = field(default_factory=dict)
    experiment: str = "default"  # run folder: logs/<experiment>/<backbone.name>/version_N
    seed: int = 1234
    logs_dir: str = "logs"
    num_threads: int | None = None  # torch intra-op threads; null = torch's default (all cores)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    mdp: MDPSection = field(default_factory=MDPSection)  # type: ignore[valid-type]
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    data: PairDataConfig = field(default_factory=PairDataConfig)  # replaced by data.name's own schema
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


# ------------------------------------------------------------------------------------------------ values
# Types are checked by OmegaConf; these ranges by check_values, when the config is composed, so a value that
# cannot work is one line before anything is built or written (not a Lightning or DataLoader traceback later).
POSITIVE = (
    "data.batch_size",
    "data.eval_batch_size",
    "backbone.image_size",
    "model.token_pool",
    "model.lm.num_layers",
    "model.lm.hidden_size",
    "model.lm.num_heads",
    "model.lm.vocab_size",
    "model.lm.tokenizer_captions",
    "generation.num_beams",
    "trainer.accumulate_grad_batches",
    "trainer.num_nodes",
)
POSITIVE_OR_NULL = ("model.max_caption_tokens", "generation.max_new_tokens", "num_threads", "data.epoch_size")
NON_NEGATIVE = (
    "data.num_workers",
    "optim.warmup_steps",
    "metrics.num_panels",
    "trainer.log_every_n_steps",
    "trainer.num_sanity_val_steps",
)
NON_NEGATIVE_OR_NULL = ("checkpoint.every_n_train_steps",)
BUDGETS = ("trainer.max_steps", "trainer.max_epochs")  # -1 = no limit (max_epochs: also null)


def check_values(config: dict[str, Any]) -> None:
    """Raise :class:`~datamodules.config.ConfigError` naming the first key whose value is out of range:
    :data:`POSITIVE` > 0, :data:`NON_NEGATIVE` and every ``data.*_size`` (a mixture's members' too) >= 0,
    :data:`BUDGETS` -1 or > 0, ``checkpoint.save_top_k`` >= -1."""
    from datamodules.config import ConfigError

    rules: list[tuple[str, Any, str]] = []
    rules += [(k, lambda v: v is not None and v > 0, "a whole number > 0") for k in POSITIVE]
    rules += [(k, lambda v: v is None or v > 0, "null or a whole number > 0") for k in POSITIVE_OR_NULL]
    rules += [(k, lambda v: v is not None and v >= 0, "a whole number >= 0") for k in NON_NEGATIVE]
    rules += [(k, lambda v: v is None or v >= 0, "null or a whole number >= 0") for k in NON_NEGATIVE_OR_NULL]
    rules += [(k, lambda v: v is None or v == -1 or v > 0, "-1 (no limit) or > 0") for k in BUDGETS]
    rules.append(("checkpoint.save_top_k", lambda v: v is not None and v >= -1, "-1 (all), 0 or more"))
    sizes = [("data", config.get("data") or {})]
    sizes += [
        (f"data.members[{i}]", m) for i, m in enumerate((config.get("data") or {}).get("members") or ())
    ]
    for prefix, section in sizes:
        for key in section:
            if key.endswith("_size") and key not in ("batch_size", "eval_batch_size", "epoch_size"):
                rules.append((f"{prefix}.{key}", lambda v: v is None or v >= 0, "a whole number >= 0"))
    for key, ok, what in rules:
        value = _select(config, key)
        if value is _MISSING or isinstance(value, bool) or not isinstance(value, int | type(None)):
            continue  # absent here, or of another type (OmegaConf checked the declared type)
        if not ok(value):
            raise ConfigError(f"{key}={value}: must be {what}")


_MISSING = object()


def _select(config: dict[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.replace("]", "").replace("[", ".").split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value
