"""Writing references with the grammar, parsing captions back, and the change-identification score.

The grammar itself (vocabulary, templates, slots) is :mod:`datamodules.synthetic.grammar`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from datamodules.synthetic.grammar import (
    ATTRIBUTE_SLOTS,
    BACKGROUND_WORDS,
    CONTEXT,
    CONTEXT_NO_OBJECTS,
    DETAILS,
    LEAD_INS,
    NO_CHANGE_CONTEXT,
    NO_CHANGE_TEMPLATES,
    NOUN_PHRASES,
    NUMBER_WORDS,
    TEMPLATES,
    VOCAB,
    change_slots,
    object_slots,
)
from datamodules.synthetic.scenes import Obj
from datamodules.synthetic.spec import PairSpec

# ---------------------------------------------------------------------------------------------- writing
_PLACEHOLDER = re.compile(r"\{([a-z_]+(?::[a-z]+)?)\}")


def expand(template: str, kind: str | None) -> str:
    """Replace the noun-phrase macros by the kind's noun phrase."""
    if kind is None:
        return template
    np = NOUN_PHRASES[kind]
    return template.replace("{the_np}", "the " + np).replace("{a_np}", "{a} " + np).replace("{np}", np)


def fill(template: str, values: Mapping, rng: random.Random) -> str:
    """Fill placeholders with a random phrase of each value; free text values (n, list, bg) go in as is."""

    def one(match: re.Match) -> str:
        key = match.group(1)
        if key == "a":
            return "{a}"
        value = values[key.split(":")[0]]
        table = VOCAB.get(key) or VOCAB.get(key.split(":")[0])
        if table is None:
            return str(value)
        return rng.choice(table[value])

    text = _PLACEHOLDER.sub(one, template)
    return re.sub(r"\{a\} (\w)", lambda m: ("an " if m.group(1) in "aeiou" else "a ") + m.group(1), text)


def _describe(obj: Obj, rng: random.Random) -> str:
    return fill("{a} " + NOUN_PHRASES[obj.kind] + " {loc}", object_slots(obj), rng)


def _object_list(objs: Sequence[Obj], rng: random.Random) -> str:
    parts = [_describe(o, rng) for o in objs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def write_references(spec: PairSpec, rng: random.Random, n: int, style: str) -> list[str]:
    """``n`` distinct references (as far as the grammar allows) for the pair, in ``style``."""
    plans = [rng.sample(range(len(TEMPLATES[c.op][1])), len(TEMPLATES[c.op][1])) for c in spec.changes]
    no_change_plan = rng.sample(range(len(NO_CHANGE_TEMPLATES)), len(NO_CHANGE_TEMPLATES))
    refs: list[str] = []
    for r in range(n):
        for _attempt in range(12):  # paraphrases are random: retry a duplicate a few times
            ref = _one_reference(spec, rng, style, [p[r % len(p)] for p in plans], no_change_plan[r % 5])
            if ref not in refs:
                break
        refs.append(ref)
    return refs


def _one_reference(
    spec: PairSpec, rng: random.Random, style: str, picks: list[int], no_change_pick: int
) -> str:
    if not spec.changes:
        sentence = NO_CHANGE_TEMPLATES[no_change_pick]
        if style == "short":
            return sentence
        objs = list(spec.before.objects)
        if len(objs) < 2:
            return f"{sentence}. " + fill(CONTEXT_NO_OBJECTS[0], {"bg": _bg(spec)}, rng)
        ctx = {
            "n": NUMBER_WORDS[len(objs)],
            "list": _object_list(objs, rng) if len(objs) <= 5 else "",
            "bg": _bg(spec),
        }
        return f"{sentence}. " + fill(
            rng.choice(NO_CHANGE_CONTEXT if len(objs) <= 5 else NO_CHANGE_CONTEXT[1:]), ctx, rng
        )
    sentences = []
    for change, pick in zip(spec.changes, picks):
        slots = change_slots(change)
        template = expand(TEMPLATES[change.op][1][pick], slots.get("kind"))
        sentences.append(fill(template, slots, rng))
    if style == "short":
        return " and ".join(sentences)
    out = []
    for change, sentence in zip(spec.changes, sentences):
        ctx = {**change_slots(change), "bg": _bg(spec)}
        obj = change.after if change.op == "addition" else change.before
        if obj is not None:
            ctx["noun"] = obj.shape if obj.kind == "shape" else obj.kind
            ctx["pose"] = obj.pose
        out.append(rng.choice(LEAD_INS) + sentence + ".")
        out.append(fill(rng.choice(DETAILS[change.op]), ctx, rng))
    touched = {c.cell for c in spec.changes}
    others = [o for o in spec.before.objects if o.cell not in touched]
    listed = 2 <= len(others) <= 4  # list the unchanged objects when there are a few
    ctx = {"n": NUMBER_WORDS.get(len(others), ""), "list": _object_list(others, rng) if listed else ""}
    ctx["bg"] = _bg(spec)
    context = rng.choice(CONTEXT if listed else CONTEXT[1:])
    out.append(fill(context, ctx, rng))
    return " ".join(out)


def _bg(spec: PairSpec) -> str:
    return BACKGROUND_WORDS[spec.before.background.texture]


# ---------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class _Pattern:
    op: str | None  # None: a no-change sentence
    kind: str | None
    regex: re.Pattern
    search: re.Pattern
    groups: tuple[tuple[str, str], ...]  # regex group -> (slot, vocabulary key)


def _alternation(phrases: Iterable[str]) -> str:
    return "|".join(re.escape(p) for p in sorted(set(phrases), key=len, reverse=True))


def _compile(template: str, op: str | None, kind: str | None) -> _Pattern:
    text = expand(template, kind)
    parts, groups, pos = [], [], 0
    for i, match in enumerate(_PLACEHOLDER.finditer(text)):
        parts.append(re.escape(text[pos : match.start()]))
        key = match.group(1)
        if key == "a":
            parts.append("an?")
        else:
            table = VOCAB[key]
            parts.append(f"(?P<g{i}>{_alternation(p for ps in table.values() for p in ps)})")
            groups.append((f"g{i}", key))
        pos = match.end()
    parts.append(re.escape(text[pos:]))
    body = "".join(parts)
    lead = f"(?:{_alternation(x for x in LEAD_INS if x)})?"
    return _Pattern(op, kind, re.compile(f"{lead}{body}"), re.compile(body), tuple(groups))


@lru_cache(maxsize=1)
def patterns() -> tuple[_Pattern, ...]:
    compiled = [_compile(t, None, None) for t in NO_CHANGE_TEMPLATES]
    for op, (kinds, templates) in TEMPLATES.items():
        compiled += [_compile(t, op, kind) for kind in kinds for t in templates]
    return tuple(compiled)


@lru_cache(maxsize=1)
def _reverse() -> dict[str, dict[str, object]]:
    return {key: {p: v for v, ps in table.items() for p in ps} for key, table in VOCAB.items()}


@dataclass
class ParsedCaption:
    changes: list[dict] = field(default_factory=list)
    no_change: bool = False

    @property
    def parsed(self) -> bool:
        return bool(self.changes) or self.no_change


def _slots(pattern: _Pattern, match: re.Match) -> dict:
    slots: dict = {"op": pattern.op}
    if pattern.kind is not None:
        slots["kind"] = pattern.kind
    reverse = _reverse()
    for group, key in pattern.groups:
        slots[key.split(":")[0]] = reverse[key][match.group(group)]
    return slots


def normalize(caption: str) -> str:
    text = re.sub(r"\s+", " ", caption.lower()).strip()
    return re.sub(r" ([.,;:!?])", r"\1", text)


def parse_caption(caption: str) -> ParsedCaption:
    """The changes a caption states. Sentences (and their ``and``-joined parts) must match a template whole;
    if nothing does, the first template found anywhere in the text is taken (lenient, for model output)."""
    result = ParsedCaption()
    text = normalize(caption)
    for sentence in (s.strip(" ,") for s in text.split(".")):
        if not sentence:
            continue
        for part in [sentence] + (sentence.split(" and ") if " and " in sentence else []):
            found = _match(part)
            if found is None:
                continue
            if found["op"] is None:
                result.no_change = True
            elif found not in result.changes:
                result.changes.append(found)
            if part is sentence:
                break  # the whole sentence matched: its parts are not separate changes
    if not result.parsed:
        hits = [
            (m.start(), -len(m.group(0)), i, p, m)
            for i, p in enumerate(patterns())
            if (m := p.search.search(text))
        ]
        if hits:
            *_, pattern, match = min(hits, key=lambda h: h[:3])
            if pattern.op is None:
                result.no_change = True
            else:
                result.changes.append(_slots(pattern, match))
    if result.changes:
        result.no_change = False
    return result


def _match(text: str) -> dict | None:
    for pattern in patterns():
        match = pattern.regex.fullmatch(text)
        if match:
            return _slots(pattern, match)
    return None


# ---------------------------------------------------------------------------------------------- scoring
def identify(
    parsed: ParsedCaption, truth: Sequence[dict]
) -> tuple[list[tuple[str | None, dict[str, bool]]], bool]:
    """Score one caption against the pair's true changes (slot dicts; empty for a no-change pair).

    Returns per true change ``(op, {"category", "attributes", "location", "exact"})`` and the pair's exact
    match (every true change stated exactly, nothing else claimed). For viewpoint / illumination the
    "attributes" are the change's details (camera move / light) and "location" follows "category". An
    object-level change also gets ``"cell"``: some change the caption states names its cell, whatever kind
    of change it names (is *where* right, even when *what* is not).
    """
    if not truth:
        ok = parsed.no_change and not parsed.changes
        return [(None, dict.fromkeys(("category", "attributes", "location", "exact"), ok))], ok
    items = []
    for t in truth:
        same_op = [p for p in parsed.changes if p["op"] == t["op"]]
        scores = {"category": bool(same_op)}
        if "kind" in t:
            keys = [k for k in ATTRIBUTE_SLOTS if k in t]
            scores["attributes"] = any(all(p.get(k) == t[k] for k in keys) for p in same_op)
            scores["location"] = any(p.get("loc") == t["loc"] for p in same_op)
            scores["cell"] = any(p.get("loc") == t["loc"] for p in parsed.changes)
        else:
            scores["attributes"] = any(p == t for p in same_op)
            scores["location"] = bool(same_op)
        scores["exact"] = t in same_op
        items.append((t["op"], scores))
    exact = all(s["exact"] for _, s in items) and len(parsed.changes) == len(truth)
    return items, exact


NO_CHANGE = "no_change"  # what read_back says a caption stated for a change when it says nothing changed
UNREADABLE = "unreadable"  # ... when no (further) change can be read from it


def read_back(parsed: ParsedCaption, truth: Sequence[dict]) -> list[tuple[str | None, str]]:
    """The kind of change a caption states for each true change: the rows and columns of a confusion matrix.

    Per true change ``(op, read)`` (one item ``(None, read)`` for a no-change pair), where ``read`` is ``op``
    itself when the caption states a change of that kind; else the kind of the first stated change that no
    other true change of the pair claims; else :data:`NO_CHANGE` when the caption says nothing changed; else
    :data:`UNREADABLE` (the grammar reads nothing, or nothing more, from it). With one change per pair (the
    default) ``read`` is simply what the caption says happened; ``read == op`` exactly when
    :func:`identify` scores the category right.
    """
    ops = [t["op"] for t in truth] or [None]
    stated = [p["op"] for p in parsed.changes]
    spare = [op for op in stated if op not in ops]  # stated kinds no true change claims, in caption order
    out = []
    for op in ops:
        if op is not None and op in stated:
            out.append((op, op))
        elif spare:
            out.append((op, spare.pop(0)))
        elif parsed.no_change and not stated:
            out.append((op, NO_CHANGE))
        else:
            out.append((op, UNREADABLE))
    return out
