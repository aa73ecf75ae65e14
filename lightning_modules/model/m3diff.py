"""The M³Diff captioner as a plain torch module (no Lightning imports):

    before, after ─► backbone (taps L layers of both images, one batched forward)
                 ─► MDP (difference-aware tokens of both images)   or, MDP off: last-layer tokens
                 ─► token pooling ─► 2-layer MLP projector ─► image block per image
                 ─► text₀ ‖ block(before) ‖ text₁ ‖ block(after) ‖ text₂ ‖ caption ─► causal LM

Two layouts of the same sequence (:mod:`.prompt` builds the text segments):

- plain (tiny LMs, no chat template): text₀ = text₁ = ∅, text₂ = the optional prompt; each image block gets a
  learned before/after segment embedding added.
- chat (a tokenizer with a chat template): the user turn ``<image>\n<image>\n<instruction>`` rendered by the
  template, split at the two placeholders, the caption as the assistant turn. The instruction is ``model.prompt``
  or each pair's own (``prompts``: pairs whose prompts differ in length are left-padded). Started from LLaVA-OneVision
  (``model.init_from``), each block is laid out as LLaVA-OneVision lays out the images of a multi-image input:
  the base-resolution patch tokens, then its ``image_newline`` embedding; no segment embedding.

Shapes: images ``(B, 3, H, W)``; tapped features ``(B, N, C)``; an image block ``(B, N' [+ 1], D)`` with ``N'``
tokens per image after pooling and ``D`` the LM width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import mdp
from lightning_modules.model.prompt import Segments

_ACTIVATIONS = {"gelu": nn.GELU, "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh")}


@dataclass
class VisualPrefix:
    """What :meth:`M3Diff.encode` returns."""

    images: tuple[torch.Tensor, torch.Tensor]  # (B, N' [+ 1], D) LM-space block of each image
    diff_maps: torch.Tensor  # (B, N) per-token change magnitude (layer-weighted), for heatmaps
    grid: tuple[int, int] | None  # token grid (h, w) of the diff maps
    layer_weights: torch.Tensor | None  # (B, L) MDP's weights over tapped layers (None: MDP off)

    @property
    def embeds(self) -> torch.Tensor:
        """(B, P, D): both image blocks, before then after."""
        return torch.cat(self.images, dim=1)


class M3Diff(nn.Module):
    """Backbone → MDP → projector → causal LM.

    Args:
        backbone: an ``mdp.Backbone`` returning one ``(B, N, C)`` tensor per tapped layer.
        difference: an ``mdp.MDP`` over those layers, or ``None`` for the baseline (last layer only).
        lm: a ``transformers`` causal LM (``get_input_embeddings``, ``generate``).
        text_segments: token ids before the first image, between the images, and after the second (the last
            one ends where the caption starts); each may be empty.
        token_pool: average-pool the token grid by this factor per side before projection.
        projector_hidden: hidden width of the projector MLP (``None``: the LM width).
        projector_act: its activation, ``"gelu"`` (exact, LLaVA's) or ``"gelu_pytorch_tanh"``.
        segment_embeddings: add a learned before / after embedding to each image block.
        image_newline: end each image block with a learned embedding (LLaVA-OneVision's ``image_newline``).
        image_positions: a 2-D position signal added to every projected image token, the same for both
            images: ``"none"``, ``"sincos"`` (fixed 2-D sine-cosine table, rms 1/sqrt(2) per channel: as large as
            the projected tokens themselves, where the LM's own position embeddings are ~30x smaller) or
            ``"learned"`` (that table as the starting point of a trained one). Needs ``grid``.
        grid: the backbone's token grid ``(h, w)`` (pooled by ``token_pool`` here).
        pad_token_id / eos_token_id: padding, and the token that ends a caption (EOS, or the chat template's
            end of turn).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        difference: nn.Module | None,
        lm: nn.Module,
        text_segments: Sequence[Sequence[int]] = ((), (), ()),
        token_pool: int = 1,
        projector_hidden: int | None = None,
        projector_act: str = "gelu",
        segment_embeddings: bool = True,
        image_newline: bool = False,
        image_positions: str = "none",
        grid: tuple[int, int] | None = None,
        pad_token_id: int,
        eos_token_id: int,
    ) -> None:
        super().__init__()
        if len(text_segments) != 3:
            raise ValueError(
                f"text_segments: before, between and after the images (3), got {len(text_segments)}"
            )
        if projector_act not in _ACTIVATIONS:
            raise ValueError(f"projector_act must be one of {sorted(_ACTIVATIONS)}, got {projector_act!r}")
        self.backbone = backbone
        self.mdp = difference
        self.lm = lm
        self.token_pool = token_pool
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        width = lm.get_input_embeddings().embedding_dim
        hidden = projector_hidden or width
        # The paper's projector: a 2-layer MLP (LLaVA-style) from vision width to LM width.
        self.projector = nn.Sequential(
            nn.Linear(backbone.width, hidden), _ACTIVATIONS[projector_act](), nn.Linear(hidden, width)
        )
        # Tells the LM which half of the prefix is "before" and which is "after".
        self.segment = nn.Parameter(torch.randn(2, width) * 0.02) if segment_embeddings else None
        self.image_newline = nn.Parameter(torch.zeros(width)) if image_newline else None
        self.image_pos = _image_positions(image_positions, grid, token_pool, width)
        for i, ids in enumerate(text_segments):
            self.register_buffer(f"text_{i}", torch.tensor(list(ids), dtype=torch.long), persistent=False)

    @property
    def text_segments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.text_0, self.text_1, self.text_2

    # ------------------------------------------------------------------------------------------ vision
    def encode(self, before: torch.Tensor, after: torch.Tensor) -> VisualPrefix:
        """``(B, 3, H, W)`` x 2 -> the two image blocks ``(B, N' [+ 1], D)`` and the difference maps."""
        batch = before.shape[0]
        # One backbone call for both images: twice the batch keeps the matmuls large.
        feats = self.backbone(torch.cat([before, after], dim=0))
        first = [f[:batch] for f in feats]
        second = [f[batch:] for f in feats]
        grid = getattr(self.backbone, "grid", None)
        if self.mdp is not None:
            out = self.mdp(first, second)
            tokens_1, tokens_2 = out.before, out.after
            weights = out.layer_weights
            diff_maps = (out.diff_maps * weights.unsqueeze(-1)).sum(dim=1)
            grid = out.grid or grid
        else:
            tokens_1, tokens_2 = first[-1], second[-1]
            weights = None
            diff_maps = (first[-1] - second[-1]).norm(dim=-1)
        blocks = []
        for i, tokens in enumerate((tokens_1, tokens_2)):
            block = self.projector(self._pool(tokens, grid))
            if self.image_pos is not None:
                block = block + self.image_pos.to(block.dtype)
            if self.segment is not None:
                block = block + self.segment[i]
            if self.image_newline is not None:
                newline = self.image_newline.to(block.dtype).expand(block.shape[0], 1, -1)
                block = torch.cat([block, newline], dim=1)
            blocks.append(block)
        return VisualPrefix(
            images=(blocks[0], blocks[1]), diff_maps=diff_maps, grid=grid, layer_weights=weights
        )

    def _pool(self, tokens: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
        if self.token_pool == 1:
            return tokens
        if grid is None:
            raise ValueError("model.token_pool > 1 needs a backbone with a square token grid")
        b, n, c = tokens.shape
        maps = tokens.transpose(1, 2).reshape(b, c, *grid)
        pooled = F.avg_pool2d(maps, self.token_pool, ceil_mode=True)
        return pooled.flatten(2).transpose(1, 2)

    def _prefix_with_prompt(
        self, before: torch.Tensor, after: torch.Tensor, prompts: Sequence[Segments] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, VisualPrefix]:
        """text₀ ‖ block(before) ‖ text₁ ‖ block(after) ‖ text₂ as ``(B, S, D)`` LM input embeddings.

        ``prompts``: each pair's own three text segments (its instruction's), or ``None`` for the model's own.
        Pairs of different prompt lengths are left-padded to the longest, so every caption starts at the same
        position; the ``(B, S)`` mask (1 = real) is then returned too, else ``None`` (no padding anywhere).
        """
        visual = self.encode(before, after)
        batch, table = before.shape[0], self.lm.get_input_embeddings()
        if prompts is None:
            parts: list[torch.Tensor] = []
            for ids, block in zip(self.text_segments, (*visual.images, None)):
                if ids.numel():
                    parts.append(table(ids).unsqueeze(0).expand(batch, -1, -1))
                if block is not None:
                    # In the LM's embedding dtype, as LLaVA casts image features before merging them in.
                    parts.append(block.to(table.weight.dtype))
            return torch.cat(parts, dim=1), None, visual
        if len(prompts) != batch:
            raise ValueError(f"{len(prompts)} prompts for a batch of {batch} pairs")
        rows = []
        for i, segments in enumerate(prompts):
            parts = []
            for ids, block in zip(segments, (visual.images[0][i], visual.images[1][i], None)):
                if len(ids):
                    parts.append(table(torch.tensor(list(ids), dtype=torch.long, device=before.device)))
                if block is not None:
                    parts.append(block.to(table.weight.dtype))
            rows.append(torch.cat(parts, dim=0))
        width = max(row.shape[0] for row in rows)
        embeds = torch.stack([F.pad(row, (0, 0, width - row.shape[0], 0)) for row in rows])
        mask = torch.zeros((batch, width), dtype=torch.long, device=before.device)
        for i, row in enumerate(rows):
            mask[i, width - row.shape[0] :] = 1
        return embeds, mask, visual

    # ------------------------------------------------------------------------------------------ training
    def forward(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        prompts: Sequence[Segments] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced caption loss.

        Args:
            input_ids: ``(B, T)`` caption tokens ending in EOS, right-padded.
            attention_mask: ``(B, T)`` 1 for real tokens.
            prompts: each pair's own text segments (:meth:`_prefix_with_prompt`); ``None``: the model's own.
        Returns:
            ``(loss, logits)``: mean cross-entropy over caption tokens only (prefix and prompt are not
            predicted) and the caption logits ``(B, T, V)``.
        """
        prefix, prefix_mask, _ = self._prefix_with_prompt(before, after, prompts)
        text = self.lm.get_input_embeddings()(input_ids)
        embeds = torch.cat([prefix, text], dim=1)
        if prefix_mask is None:
            prefix_mask = attention_mask.new_ones(prefix.shape[:2])
            padded = {}
        else:  # left padding: positions count real tokens only, as each pair alone would have them
            padded = {"position_ids": positions(torch.cat([prefix_mask, attention_mask], dim=1))}
        mask = torch.cat([prefix_mask, attention_mask], dim=1)
        steps = input_ids.shape[1]
        # Only the last T+1 positions feed the LM head: position P-1 predicts the first caption token. No KV
        # cache in training (it would only hold memory; activation checkpointing refuses one anyway).
        out = self.lm(
            inputs_embeds=embeds, attention_mask=mask, logits_to_keep=steps + 1, use_cache=False, **padded
        )
        logits = out.logits[:, :-1]
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100
        )
        return loss, logits

    # ------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        *,
        max_new_tokens: int = 48,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        use_cache: bool = True,
        min_new_tokens: int = 0,
        prompts: Sequence[Segments] | None = None,
    ) -> tuple[list[list[int]], VisualPrefix]:
        """Greedy (``num_beams=1``) or beam-search captions, batched, with or without the KV cache.

        ``min_new_tokens`` suppresses EOS until that many tokens exist (benchmarks force a length with it).

        With the model's own text segments every pair's prefix has the same length and needs no padding;
        ``prompts`` (each pair's own, :meth:`_prefix_with_prompt`) left-pads the shorter prefixes, and the
        attention mask tells ``generate`` (which then counts positions over real tokens only).
        ``use_cache=False`` with greedy decoding recomputes the whole sequence at every step
        (:meth:`_greedy_without_cache`): HF ``generate`` always uses its cache when it starts from
        ``inputs_embeds``, whatever ``use_cache`` says, so beam search is always cached.
        Returns the generated token ids per pair (EOS and padding stripped) and the visual prefix.
        """
        embeds, prefix_mask, visual = self._prefix_with_prompt(before, after, prompts)
        if not use_cache and num_beams == 1:
            out = self._greedy_without_cache(
                embeds, prefix_mask, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens
            )
        else:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            mask = mask if prefix_mask is None else prefix_mask
            out = self.lm.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                length_penalty=length_penalty,
                do_sample=False,
                use_cache=use_cache,
                min_new_tokens=min_new_tokens or None,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
            )
        sequences = []
        for row in out.tolist():
            ids = []
            for token in row:
                if token == self.eos_token_id:
                    break
                if token != self.pad_token_id:
                    ids.append(token)
            sequences.append(ids)
        return sequences, visual

    def _greedy_without_cache(
        self,
        embeds: torch.Tensor,
        prefix_mask: torch.Tensor | None,
        *,
        max_new_tokens: int,
        min_new_tokens: int,
    ) -> torch.Tensor:
        """Greedy decoding with no KV cache: the LM reads prefix + tokens so far at every step.

        Same rules as HF's greedy search: EOS is masked until ``min_new_tokens``, logits are compared in fp32,
        and a finished sequence continues with padding. Extra processors that a pretrained LM's own
        ``generation_config`` may ask for (repetition penalty, ...) are not applied here.
        ``(B, P, D)`` (and its ``(B, P)`` mask when left-padded) -> ``(B, <= max_new_tokens)`` token ids.
        """
        table = self.lm.get_input_embeddings()
        tokens = torch.empty((embeds.shape[0], 0), dtype=torch.long, device=embeds.device)
        done = torch.zeros(embeds.shape[0], dtype=torch.bool, device=embeds.device)
        for step in range(max_new_tokens):
            sequence = torch.cat([embeds, table(tokens)], dim=1)
            padded = {}
            if prefix_mask is not None:
                mask = torch.cat([prefix_mask, prefix_mask.new_ones(tokens.shape)], dim=1)
                padded = {"attention_mask": mask, "position_ids": positions(mask)}
            out = self.lm(inputs_embeds=sequence, use_cache=False, logits_to_keep=1, **padded)
            logits = out.logits[:, -1].float()
            if step < min_new_tokens:
                logits[:, self.eos_token_id] = float("-inf")
            next_token = logits.argmax(dim=-1).masked_fill(done, self.pad_token_id)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            done |= next_token == self.eos_token_id
            if bool(done.all()):
                break
        return tokens


def sincos_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """``(height * width, dim)`` 2-D sine-cosine positions (row-major, as MAE's): half the channels encode the
    row, half the column, each as sin / cos of ``dim / 4`` frequencies; every value in [-1, 1]."""
    if dim % 4:
        raise ValueError(f"2-D sine-cosine positions need a width divisible by 4, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    parts = []
    for coord in (rows.flatten(), cols.flatten()):
        angles = coord[:, None].double() * freqs[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def _image_positions(kind: str, grid: tuple[int, int] | None, pool: int, width: int) -> torch.Tensor | None:
    """The ``image_positions`` table ``(N', D)`` for the pooled grid: a buffer (sincos), a parameter (learned)."""
    if kind == "none":
        return None
    if kind not in ("sincos", "learned"):
        raise ValueError(f"image_positions must be 'none', 'sincos' or 'learned', got {kind!r}")
    if grid is None:
        raise ValueError("image_positions needs a backbone with a token grid")
    table = sincos_2d(math.ceil(grid[0] / pool), math.ceil(grid[1] / pool), width)
    return nn.Parameter(table) if kind == "learned" else nn.Buffer(table, persistent=False)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` attention mask -> position ids counting real tokens only (left padding at 0), as HF's
    ``generate`` derives them: each pair's tokens sit where they would with no padding."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def heatmaps(visual: VisualPrefix) -> torch.Tensor | None:
    """Per-pair difference maps ``(B, h, w)`` scaled to [0, 1], or ``None`` without a token grid."""
    maps = visual.diff_maps
    grid = visual.grid
    if grid is None:
        side = math.isqrt(maps.shape[-1])
        if side * side != maps.shape[-1]:
            return None
        grid = (side, side)
    maps = maps.reshape(maps.shape[0], *grid).float()
    low = maps.flatten(1).min(1).values.view(-1, 1, 1)
    high = maps.flatten(1).max(1).values.view(-1, 1, 1)
    return (maps - low) / (high - low).clamp_min(1e-6)


def build_mdp(mdp_cfg: dict, *, width: int, num_layers: int) -> nn.Module | None:
    """``mdp`` config section -> ``mdp.MDP`` (or ``None`` when disabled)."""
    if not mdp_cfg["enabled"]:
        return None
    fields = {k: mdp_cfg[k] for k in mdp.MDPConfig.field_names() if k in mdp_cfg}
    return mdp.MDP(config=mdp.MDPConfig(**{**fields, "dim": width, "num_layers": num_layers}))
