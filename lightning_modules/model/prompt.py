"""The text around the two images: plain (tiny LMs) or rendered by a chat template (instruct LMs, ``model.init_from``).

**Which chat template** (:func:`find_chat_template`, one rule): ``model.chat_template: null`` takes the processor's
template when the folder has one, the file transformers' processor loads (``processor_config.json``'s
``chat_template``, else ``chat_template.json``, else ``chat_template.jinja``, as ``processor.save_pretrained`` writes
them), else the tokenizer's (what ``AutoTokenizer`` loads); ``processor`` / ``tokenizer`` names one. A
LLaVA-OneVision folder is released with its processor's template, which is what ``processor.apply_chat_template``
renders. With ``model.init_from`` a folder without any template is an error, never the plain layout.

**The user turn** holds both images, then the instruction, the form of LLaVA-style instruction data (M³Diff's
released training set among them): a processor's template takes typed content, as ``processor.apply_chat_template``
does (``{"type": "image"}`` twice, then ``{"type": "text", "text": <instruction>}``); a template written for text
content (Qwen2-Instruct's tokenizer template) takes ``"<image>\\n<image>\\n<instruction>"``. Which of the two a
template renders is found by rendering it. The rendered text is split at the two ``<image>`` placeholders.

**The system turn** is ``model.system_prompt``, "You are a helpful assistant." by default: LLaVA-OneVision was trained
with it (LLaVA-NeXT's Qwen conversation template), transformers' conversion script writes it in its check prompt,
and Qwen2-Instruct's template adds it when none is sent. The conversion script's processor template has no default
system turn, so the kit sends it explicitly; ``null`` sends none.

The caption is the assistant turn, closed by the template's end-of-turn token (``<|im_end|>`` for Qwen2), which is
also where generation stops. The instruction is ``model.prompt``, or, with a chat template, a sample's own
``instruction`` where it has one (:class:`InstructionPrompts`); the plain layout always uses ``model.prompt``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
SYSTEM_PROMPT = "You are a helpful assistant."
TEMPLATE_CHOICES = ("processor", "tokenizer")
# Where transformers' ProcessorMixin reads a processor's chat template from, in its order of precedence.
PROCESSOR_TEMPLATE_FILES = ("processor_config.json", "chat_template.json", "chat_template.jinja")
Segments = tuple[list[int], list[int], list[int]]  # token ids before, between and after the images


class ChatTemplateError(ValueError):
    """A chat template (or an instruction) the kit cannot lay the two images out with; one line, what to change."""


@dataclass(frozen=True)
class PromptLayout:
    """Token ids before, between and after the two image blocks, and the token that ends a caption."""

    segments: Segments
    end_token_id: int
    chat: bool


@dataclass(frozen=True)
class ChatTemplate:
    text: str  # the Jinja template
    source: str  # for messages: "the processor's chat template (<folder>/chat_template.jinja)", ...


# ----------------------------------------------------------------------------------------------- which template
def processor_chat_template(folder: str | Path) -> tuple[str, str] | None:
    """``(template, file name)`` of the chat template transformers' processor loads from ``folder``, or None."""
    folder = Path(folder)
    for name in PROCESSOR_TEMPLATE_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name == "chat_template.jinja":
            return path.read_text(encoding="utf-8"), name
        template = _default_template(json.loads(path.read_text(encoding="utf-8")).get("chat_template"))
        if template:
            return template, name
    return None


def tokenizer_has_template(folder: str | Path) -> bool:
    """Whether ``AutoTokenizer`` finds a chat template in ``folder`` (``tokenizer_config.json`` or the
    ``chat_template.jinja`` a tokenizer's ``save_pretrained`` writes), without loading the tokenizer."""
    folder = Path(folder)
    config = folder / "tokenizer_config.json"
    in_config = config.is_file() and bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    return in_config or (folder / "chat_template.jinja").is_file()


def available_templates(folder: str | Path) -> list[str]:
    """The chat templates a folder has, in the order of the rule: ``processor``, then ``tokenizer``."""
    found = [
        ("processor", processor_chat_template(folder) is not None),
        ("tokenizer", tokenizer_has_template(folder)),
    ]
    return [name for name, present in found if present]


def resolve_template_choice(folder: str | Path, choice: str | None) -> str:
    """``model.chat_template`` for a resolved config: ``choice``, checked to exist in ``folder``, or for None the
    first the folder has (``processor``, then ``tokenizer``); a folder with none is an error."""
    if choice is not None and choice not in TEMPLATE_CHOICES:
        raise ChatTemplateError(f"model.chat_template={choice!r}: null, 'processor' or 'tokenizer'")
    found = available_templates(folder)
    if not found:
        raise ChatTemplateError(no_template_message(folder))
    if choice is not None and choice not in found:
        raise ChatTemplateError(
            f"model.chat_template={choice}: {folder} has no {choice} chat template, only the {found[0]}'s"
        )
    return choice or found[0]


def find_chat_template(folder: str | Path | None, tokenizer: Any, choice: str | None) -> ChatTemplate | None:
    """The chat template of the rule (module docstring): ``choice`` None = the processor's, else the tokenizer's,
    else None; ``processor`` / ``tokenizer`` = that one or an error."""
    if choice is not None and choice not in TEMPLATE_CHOICES:
        raise ChatTemplateError(f"model.chat_template={choice!r}: null, 'processor' or 'tokenizer'")
    processor = processor_chat_template(folder) if folder and Path(folder).is_dir() else None
    if choice in (None, "processor") and processor is not None:
        return ChatTemplate(processor[0], f"the processor's chat template ({Path(folder) / processor[1]})")
    own = _default_template(getattr(tokenizer, "chat_template", None))
    if choice in (None, "tokenizer") and own:
        return ChatTemplate(own, f"the tokenizer's chat template ({folder})")
    if choice is not None:
        raise ChatTemplateError(f"model.chat_template={choice}: {folder} has no {choice} chat template")
    return None


def _default_template(template: Any) -> str | None:
    """A template, or the ``default`` one of named templates (a dict, or tokenizer_config's list of dicts)."""
    if isinstance(template, list):
        template = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
    if isinstance(template, dict):
        template = template.get("default")
    return template if isinstance(template, str) and template else None


# ----------------------------------------------------------------------------------------------- layouts
def prompt_for(config: dict[str, Any], tokenizer: Any) -> ChatPrompt | None:
    """The chat prompt of a resolved run config (``model.chat_template`` / ``model.system_prompt`` over the
    ``model.lm.name`` folder, which ``model.init_from`` sets), or None for the plain layout."""
    model_cfg = config["model"]
    init_from = model_cfg.get("init_from")
    folder = init_from or model_cfg["lm"]["name"]
    template = find_chat_template(folder, tokenizer, model_cfg.get("chat_template"))
    if template is None:
        if init_from:
            raise ChatTemplateError(no_template_message(init_from))
        return None
    return ChatPrompt(tokenizer, template, system_prompt=model_cfg.get("system_prompt", SYSTEM_PROMPT))


def no_template_message(folder: str | Path) -> str:
    return (
        f"model.init_from={folder}: no chat template there (neither the processor's {', '.join(PROCESSOR_TEMPLATE_FILES)}"
        " nor the tokenizer's tokenizer_config.json); LLaVA-OneVision's prompt is rendered by it and the kit does "
        "not fall back to a plain layout: copy the released folder's chat_template.json or chat_template.jinja in"
    )


def build_layout(tokenizer: Any, instruction: str, chat: ChatPrompt | None) -> PromptLayout:
    """The chat layout of ``chat`` when there is one, else the plain one."""
    return chat.layout(instruction) if chat is not None else plain_layout(tokenizer, instruction)


def plain_layout(tokenizer: Any, prompt: str) -> PromptLayout:
    """``[before ‖ after ‖ prompt ‖ caption EOS]``: the kit's layout for LMs without a chat template."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    return PromptLayout(segments=([], [], list(ids)), end_token_id=tokenizer.eos_token_id, chat=False)


class ChatPrompt:
    """A chat template's prompt for two images and an instruction, rendered as transformers renders it."""

    PROBE = "M3DIFF_INSTRUCTION"

    def __init__(self, tokenizer: Any, template: ChatTemplate, *, system_prompt: str | None) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.system_prompt = system_prompt or None
        self.typed = self._content_form()

    def messages(self, instruction: str, *, caption: str | None = None) -> list[dict[str, Any]]:
        """The conversation: the system turn (if any), the user turn, and the assistant's ``caption`` if given."""
        turns = [("system", None, self.system_prompt)] if self.system_prompt else []
        turns.append(("user", 2, instruction))
        if caption is not None:
            turns.append(("assistant", None, caption))
        return [self._message(role, images, text, typed=self.typed) for role, images, text in turns]

    @staticmethod
    def _message(role: str, images: int | None, text: str, *, typed: bool) -> dict[str, Any]:
        if typed:
            content = [{"type": "image"} for _ in range(images or 0)] + [{"type": "text", "text": text}]
            return {"role": role, "content": content}
        return {"role": role, "content": f"{IMAGE_PLACEHOLDER}\n" * (images or 0) + text}

    def render(self, instruction: str, *, caption: str | None = None) -> str:
        """The rendered text; without ``caption`` it ends with the generation prompt."""
        return self.tokenizer.apply_chat_template(
            self.messages(instruction, caption=caption),
            chat_template=self.template.text,
            tokenize=False,
            add_generation_prompt=caption is None,
        )

    def _content_form(self) -> bool:
        """True: typed content (a processor's template); False: ``<image>`` placeholders in the text."""
        for typed in (True, False):
            self.typed = typed
            try:
                text = self.render(self.PROBE)
            except Exception:  # a template written for the other form fails in its own way (jinja, TypeError)
                continue
            if text.count(IMAGE_PLACEHOLDER) == 2 and self.PROBE in text:
                return typed
        raise ChatTemplateError(
            f"{self.template.source} places no two '{IMAGE_PLACEHOLDER}' and the instruction in a user turn, neither "
            "from typed content ({'type': 'image'} x 2, {'type': 'text'}) nor from the text "
            f"'{IMAGE_PLACEHOLDER}\\n{IMAGE_PLACEHOLDER}\\n<instruction>': choose another (model.chat_template)"
        )

    def segments(self, instruction: str) -> tuple[Segments, str]:
        """The rendered prompt (with the generation prompt) split at the placeholders and tokenized; also the text."""
        if IMAGE_PLACEHOLDER in instruction:
            raise ChatTemplateError(
                f"the instruction {instruction!r} (model.prompt) contains '{IMAGE_PLACEHOLDER}': the kit places the "
                "two images itself, before the instruction; remove it"
            )
        prompt = self.render(instruction)
        parts = prompt.split(IMAGE_PLACEHOLDER)
        if len(parts) != 3:  # e.g. a system prompt that mentions the placeholder
            raise ChatTemplateError(
                f"{self.template.source} rendered {len(parts) - 1} '{IMAGE_PLACEHOLDER}' for two images with "
                f"model.system_prompt={self.system_prompt!r}: {prompt!r}"
            )
        ids = [list(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in parts]
        return (ids[0], ids[1], ids[2]), prompt

    def layout(self, instruction: str) -> PromptLayout:
        """The segments, and the end-of-turn token after an assistant turn (where a caption ends)."""
        segments, prompt = self.segments(instruction)
        marker = "M3DIFF_CAPTION"
        full = self.render(instruction, caption=marker)
        if not full.startswith(prompt + marker):
            raise ChatTemplateError(
                f"{self.template.source} does not render an assistant turn as a continuation of its generation "
                "prompt, so the caption cannot be placed after it; use a template that does (Qwen2, Llama 3, ...)"
            )
        tail = full[len(prompt) + len(marker) :]
        tail_ids = self.tokenizer(tail, add_special_tokens=False)["input_ids"] if tail.strip() else []
        special = set(self.tokenizer.all_special_ids)
        end = tail_ids[0] if tail_ids and tail_ids[0] in special else self.tokenizer.eos_token_id
        if end is None:
            raise ChatTemplateError(
                f"{self.template.source} ends turns with no special token and the tokenizer has no EOS: "
                "a caption could not end"
            )
        return PromptLayout(segments=segments, end_token_id=int(end), chat=True)


class InstructionPrompts:
    """Each pair's own text segments when its sample carries an ``instruction`` (chat layout only).

    With a chat template a sample's instruction is its user turn's text; a sample without one gets
    ``model.prompt`` (``default``). Without a chat template (the tiny default LMs) instructions are not used:
    the plain layout keeps ``model.prompt`` after the images for every pair. Rendered segments are cached per
    instruction (an instruction file repeats a few instructions over many records).
    """

    def __init__(self, chat: ChatPrompt | None, *, default: str, cache_size: int = 4096) -> None:
        self.chat_prompt = chat
        self.default = default
        self.chat = chat is not None
        self.cache_size = cache_size
        self._cache: dict[str, Segments] = {}

    def segments(self, instructions: Sequence[str | None] | None) -> list[Segments] | None:
        """One ``(before, between, after)`` id triple per pair, or ``None`` when the model's own segments
        (``model.prompt``'s) serve every pair: no chat template, no instructions, or all equal to the default."""
        if self.chat_prompt is None or not instructions:
            return None
        texts = [self.default if text is None else text for text in instructions]
        if all(text == self.default for text in texts):
            return None
        return [self._segments(text) for text in texts]

    def _segments(self, instruction: str) -> Segments:
        if instruction not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[instruction] = self.chat_prompt.segments(instruction)[0]
        return self._cache[instruction]
