"""The text around the two images: plain (tiny LMs) or from the tokenizer's chat template (instruct LMs).

With a chat template the user turn is ``<image>\\n<image>\\n<instruction>``, the form of LLaVA-style instruction
data (M³Diff's released training set among them) and of LLaVA-NeXT's Qwen training format; the template renders
it (system prompt and role markers included) with the generation prompt, and the rendered text is split at the two
``<image>`` placeholders. The caption is the assistant turn, closed by the template's end-of-turn token
(``<|im_end|>`` for Qwen2), which is also where generation stops.

The instruction is ``model.prompt``, or, with a chat template, a sample's own ``instruction`` where it has one
(:class:`InstructionPrompts`); the plain layout always uses ``model.prompt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
Segments = tuple[list[int], list[int], list[int]]  # token ids before, between and after the images


@dataclass(frozen=True)
class PromptLayout:
    """Token ids before, between and after the two image blocks, and the token that ends a caption."""

    segments: Segments
    end_token_id: int
    chat: bool


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_layout(tokenizer: Any, instruction: str) -> PromptLayout:
    """The chat layout when the tokenizer has a chat template, else the plain one."""
    return (
        chat_layout(tokenizer, instruction)
        if has_chat_template(tokenizer)
        else plain_layout(tokenizer, instruction)
    )


def plain_layout(tokenizer: Any, prompt: str) -> PromptLayout:
    """``[before ‖ after ‖ prompt ‖ caption EOS]``: the kit's layout for LMs without a chat template."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    return PromptLayout(segments=([], [], list(ids)), end_token_id=tokenizer.eos_token_id, chat=False)


def _render(tokenizer: Any, messages: list[dict[str, str]], **kwargs: Any) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def _user_turn(instruction: str) -> dict[str, str]:
    return {"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{IMAGE_PLACEHOLDER}\n{instruction}"}


def chat_segments(tokenizer: Any, instruction: str) -> tuple[Segments, str]:
    """The user turn ``<image>\\n<image>\\n<instruction>`` rendered with the generation prompt, split at the
    placeholders and tokenized; also the rendered text (to find the end-of-turn token after it)."""
    user = _user_turn(instruction)
    prompt = _render(tokenizer, [user], add_generation_prompt=True)
    parts = prompt.split(IMAGE_PLACEHOLDER)
    if len(parts) != 3:
        raise ValueError(
            f"the tokenizer's chat template rendered {len(parts) - 1} '{IMAGE_PLACEHOLDER}' placeholders for two "
            f"images (instruction {instruction!r}); remove '{IMAGE_PLACEHOLDER}' from model.prompt or the "
            "sample's instruction"
        )
    ids = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in parts]
    return (ids[0], ids[1], ids[2]), prompt


def chat_layout(tokenizer: Any, instruction: str) -> PromptLayout:
    """Split the rendered user turn at the image placeholders; find the end-of-turn token after the caption."""
    segments, prompt = chat_segments(tokenizer, instruction)
    user = _user_turn(instruction)
    marker = "M3DIFF_CAPTION"
    full = _render(tokenizer, [user, {"role": "assistant", "content": marker}])
    if not full.startswith(prompt + marker):
        raise ValueError(
            "the tokenizer's chat template does not render an assistant turn as a continuation of its generation "
            "prompt, so the caption cannot be placed after it; use a template that does (Qwen2, Llama 3, ...)"
        )
    tail = full[len(prompt) + len(marker) :]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail.strip() else []
    special = set(tokenizer.all_special_ids)
    end = tail_ids[0] if tail_ids and tail_ids[0] in special else tokenizer.eos_token_id
    if end is None:
        raise ValueError(
            "the tokenizer has no end-of-turn token (its chat template ends turns with none, no EOS)"
        )
    return PromptLayout(segments=segments, end_token_id=int(end), chat=True)


class InstructionPrompts:
    """Each pair's own text segments when its sample carries an ``instruction`` (chat layout only).

    With a chat template a sample's instruction is its user turn's text; a sample without one gets
    ``model.prompt`` (``default``). Without a chat template (the tiny default LMs) instructions are not used:
    the plain layout keeps ``model.prompt`` after the images for every pair. Rendered segments are cached per
    instruction (an instruction file repeats a few instructions over many records).
    """

    def __init__(self, tokenizer: Any, *, default: str, cache_size: int = 4096) -> None:
        self.tokenizer = tokenizer
        self.default = default
        self.chat = has_chat_template(tokenizer)
        self.cache_size = cache_size
        self._cache: dict[str, Segments] = {}

    def segments(self, instructions: Sequence[str | None] | None) -> list[Segments] | None:
        """One ``(before, between, after)`` id triple per pair, or ``None`` when the model's own segments
        (``model.prompt``'s) serve every pair: no chat template, no instructions, or all equal to the default."""
        if not self.chat or not instructions:
            return None
        texts = [self.default if text is None else text for text in instructions]
        if all(text == self.default for text in texts):
            return None
        return [self._segments(text) for text in texts]

    def _segments(self, instruction: str) -> Segments:
        if instruction not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[instruction] = chat_segments(self.tokenizer, instruction)[0]
        return self._cache[instruction]
