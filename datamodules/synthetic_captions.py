"""The caption grammar of the embedded benchmark, its parser, and the change-identification score.

A change is described by **slots** (:func:`change_slots`): the operation, the object's kind and its naming
attributes (size, colour, shape / word / count and members), its cell (``loc``) and the change's details
(new colour, new size, new word, the attachment taken off, the camera move, the light...). A **template** is a
string with ``{slot}`` / ``{slot:form}`` placeholders; every phrase of every slot maps back to one value, so
each template compiles to a regular expression that recovers the slots exactly. Rule checked by the tests:
all short templates of an operation carry the same slots, so any reference the grammar writes names the whole
change, and the parser recovers it.

Styles: ``short`` is one CLEVR-Change-like sentence per change ("the small red triangle in the top left turned
blue"); ``long`` is OmniDiff-like, tens of words: an optional lead-in + the change sentence, a sentence on what
the object looks like / what stayed the same about it, and one on the rest of the scene.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from datamodules.synthetic_changes import Change, PairSpec
from datamodules.synthetic_scenes import CELL_NAMES, COLORS, SHAPES, WORDS, Obj

# ---------------------------------------------------------------------------------------------- vocabulary
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
_PLURAL = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "cross": "crosses",
}
_LOC = {
    0: ["in the top left", "in the top left corner", "at the upper left"],
    1: ["at the top", "in the top middle", "at the top center"],
    2: ["in the top right", "in the top right corner", "at the upper right"],
    3: ["on the left", "at the left side", "in the middle left"],
    4: ["in the center", "in the middle", "at the center"],
    5: ["on the right", "at the right side", "in the middle right"],
    6: ["in the bottom left", "in the bottom left corner", "at the lower left"],
    7: ["at the bottom", "in the bottom middle", "at the bottom center"],
    8: ["in the bottom right", "in the bottom right corner", "at the lower right"],
}
assert len(_LOC) == len(CELL_NAMES)
_POSE = {
    "up": ["its arms up", "both arms raised"],
    "down": ["its arms down", "both arms lowered"],
    "out": ["its arms spread out", "its arms out to the sides"],
    "one_up": ["one arm raised", "one arm up"],
}
_CAMERA = {
    "left": ["moved to the left", "panned to the left"],
    "right": ["moved to the right", "panned to the right"],
    "up": ["moved up", "tilted up"],
    "down": ["moved down", "tilted down"],
    "clockwise": ["rotated clockwise", "turned clockwise"],
    "counterclockwise": ["rotated counterclockwise", "turned counterclockwise"],
    "in": ["zoomed in", "moved closer"],
    "out": ["zoomed out", "moved back"],
}
_LIGHT = {
    "brighter": ["the scene became brighter", "everything looks brighter now"],
    "darker": ["the scene became darker", "everything looks darker now"],
    "warmer": ["the light turned warmer", "the scene has a warm yellow tint now"],
    "cooler": ["the light turned cooler", "the scene has a cool blue tint now"],
    **{
        f"shadow_{side}": [
            f"a shadow now covers the {side} half",
            f"the {side} half of the scene is in shadow",
        ]
        for side in ("left", "right", "top", "bottom")
    },
}


def _same(values: Iterable[str]) -> dict[str, list[str]]:
    return {v: [v] for v in values}


# slot[:form] -> value -> phrases. Each phrase belongs to one value (the parser inverts this table).
VOCAB: dict[str, dict] = {
    "color": _same(COLORS),
    "size": _same(("small", "large")),
    "size:verb": {"large": ["grew", "got bigger"], "small": ["shrank", "got smaller"]},
    "shape": _same(SHAPES),
    "members": {s: [p] for s, p in _PLURAL.items()},
    "count": {n: [NUMBER_WORDS[n]] for n in range(2, 6)},
    "word": _same(WORDS),
    "attachment": _same(("hat", "sticker", "stripe")),
    "pose": _POSE,
    "pose:bare": {"up": ["arms up"], "down": ["arms down"], "out": ["arms out"], "one_up": ["one arm up"]},
    "loc": _LOC,
    "cam": _CAMERA,
    "light": _LIGHT,
}
# new_<slot> uses the vocabulary of <slot>
for _key in list(VOCAB):
    if _key.split(":")[0] in ("color", "size", "shape", "count", "word", "pose"):
        VOCAB["new_" + _key] = VOCAB[_key]

# The object's noun phrase by kind (without article); {the_np} / {a_np} / {np} in templates.
NOUN_PHRASES = {
    "shape": "{size} {color} {shape}",
    "figure": "{size} {color} figure",
    "sign": "{color} {word} sign",
    "group": "group of {count} {color} {members}",
}
ALL_KINDS = tuple(NOUN_PHRASES)
ATTRIBUTE_SLOTS = ("kind", "size", "color", "shape", "word", "count", "members")

# operation -> (object kinds it applies to, short templates). Global operations have kinds (None,).
TEMPLATES: dict[str, tuple[tuple[str | None, ...], tuple[str, ...]]] = {
    "viewpoint": ((None,), (
        "the camera {cam}",
        "the viewpoint changed because the camera {cam}",
        "the picture was taken after the camera {cam}",
    )),
    "illumination": ((None,), (
        "{light}",
        "the lighting changed and {light}",
        "the illumination changed, {light}",
    )),
    "addition": (ALL_KINDS, (
        "{a_np} appeared {loc}",
        "{a_np} was added {loc}",
        "there is a new {np} {loc}",
        "someone put {a_np} {loc}",
    )),
    "disappearance": (ALL_KINDS, (
        "{the_np} {loc} disappeared",
        "{the_np} {loc} is gone",
        "{the_np} {loc} has vanished",
        "there is no {np} {loc} anymore",
    )),
    "removal": (("shape",), (
        "the {attachment} was taken off {the_np} {loc}",
        "{the_np} {loc} lost its {attachment}",
        "{the_np} {loc} no longer has a {attachment}",
        "the {attachment} on {the_np} {loc} was removed",
    )),
    "replacement": (("shape",), (
        "{the_np} {loc} was replaced by {a} {new_color} {new_shape}",
        "{the_np} {loc} became {a} {new_color} {new_shape}",
        "{a} {new_color} {new_shape} took the place of {the_np} {loc}",
        "{the_np} {loc} was swapped for {a} {new_color} {new_shape}",
    )),
    "size": (("shape", "figure"), (
        "{the_np} {loc} {new_size:verb}",
        "{the_np} {loc} became {new_size}",
        "{the_np} {loc} is {new_size} now",
        "the size of {the_np} {loc} changed to {new_size}",
    )),
    "color": (ALL_KINDS, (
        "{the_np} {loc} turned {new_color}",
        "{the_np} {loc} is now {new_color}",
        "{the_np} {loc} was painted {new_color}",
        "the color of {the_np} {loc} changed to {new_color}",
    )),
    "orientation": (("shape",), (
        "{the_np} {loc} was rotated",
        "{the_np} {loc} changed its orientation",
        "someone rotated {the_np} {loc}",
        "{the_np} {loc} is now tilted at a different angle",
    )),
    "pose": (("figure",), (
        "{the_np} {loc} now has {new_pose}",
        "{the_np} {loc} changed its pose to {new_pose:bare}",
        "{the_np} {loc} now stands with {new_pose}",
        "the pose of {the_np} {loc} changed to {new_pose:bare}",
    )),
    "text": (("sign",), (
        "{the_np} {loc} now says {new_word}",
        "the word on {the_np} {loc} changed to {new_word}",
        "{the_np} {loc} now reads {new_word}",
        "the text on {the_np} {loc} is now {new_word}",
    )),
    "count": (("group",), (
        "the group of {color} {members} {loc} went from {count} to {new_count}",
        "the number of {color} {members} {loc} changed from {count} to {new_count}",
        "there are now {new_count} {color} {members} {loc} instead of {count}",
        "{the_np} {loc} now has {new_count} members",
    )),
}  # fmt: skip
NO_CHANGE_TEMPLATES = (
    "nothing changed",
    "there is no change",
    "the two images are the same",
    "the scene did not change",
    "there is no difference between the two images",
)
LEAD_INS = ("", "in the second image, ", "compared with the first image, ", "looking at the two images, ")

# Long style: what the object looks like / what stayed the same (never parsed; any slot of the change,
# plus noun, bg, n, list).
DETAILS: dict[str, tuple[str, ...]] = {
    "viewpoint": (
        "nothing in the scene itself is different, only the point of view, so every object and the {bg} background "
        "moved together in the frame.",
        "all the objects are still there with their colors and shapes, but they sit elsewhere in the picture.",
    ),
    "illumination": (
        "no object appeared, disappeared or moved, only the light on the whole scene is different.",
        "the objects and the {bg} background keep their places, colors and shapes.",
    ),
    "addition": (
        "the new {noun} is {color} and stands in a spot that was empty before, showing only the {bg} background.",
        "before, there was nothing {loc}, and the objects around it did not move.",
    ),
    "disappearance": (
        "the spot where the {color} {noun} stood now shows only the {bg} background.",
        "it has left an empty space {loc}, and no other object took its place.",
    ),
    "removal": (
        "the {noun} itself is still there, with the same {color} color, size and position.",
        "only the {attachment} is missing, the {color} {noun} has not moved or changed shape.",
    ),
    "replacement": (
        "the new {new_shape} has the same size as the old {shape} and stands exactly where it was.",
        "the old {color} {shape} is no longer visible, and the new object is {new_color}.",
    ),
    "size": (
        "its color, shape and position stay the same, only its size is different.",
        "it is still {color} and in the same place, but it is now {new_size} instead of {size}.",
    ),
    "color": (
        "its shape, size and position did not change, only its paint is different.",
        "it was {color} before and is {new_color} now, and it has not moved.",
    ),
    "orientation": (
        "it keeps its {color} color and its size and stays in the same place, but it points in a new direction.",
        "only its angle is different, its color, size and position are the same.",
    ),
    "pose": (
        "the figure stays in the same place and keeps its {color} color and size.",
        "it used to have {pose} and now it has {new_pose}.",
    ),
    "text": (
        "the sign keeps its {color} color and its position, only the word on it is different.",
        "it used to say {word}, and the board itself did not move.",
    ),
    "count": (
        "the {members} that were already there did not move, and they are all small and {color}.",
        "the group stays {loc} and keeps its {color} color.",
    ),
}
CONTEXT = (
    "the other {n} objects, {list}, did not change.",
    "everything else, including the {bg} background, stays the same.",
    "apart from that, the {bg} background and the other objects look exactly as before.",
)
CONTEXT_NO_OBJECTS = ("the {bg} background and everything on it look exactly the same in both images.",)
NO_CHANGE_CONTEXT = (
    "all {n} objects, {list}, are exactly where they were, and the {bg} background is unchanged.",
    "the {bg} background, the lighting and all {n} objects look exactly the same in both images.",
)
BACKGROUND_WORDS = {"mottled": "mottled", "striped": "striped", "checkered": "checkered", "grainy": "grainy"}


# ---------------------------------------------------------------------------------------------- slots
def object_slots(obj: Obj) -> dict:
    slots: dict = {"kind": obj.kind, "color": obj.color, "loc": obj.cell}
    if obj.kind in ("shape", "figure"):
        slots["size"] = obj.size
    if obj.kind == "shape":
        slots["shape"] = obj.shape
    elif obj.kind == "sign":
        slots["word"] = obj.word
    elif obj.kind == "group":
        slots["count"], slots["members"] = obj.count, obj.shape
    return slots


def change_slots(change: Change) -> dict:
    """The truth of one change as the slots its references state (what the parser must recover)."""
    if change.op == "viewpoint":
        return {"op": "viewpoint", "cam": change.camera.kind}
    if change.op == "illumination":
        return {"op": "illumination", "light": change.light}
    obj = change.after if change.op == "addition" else change.before
    slots = {"op": change.op, **object_slots(obj)}
    after = change.after
    details = {
        "removal": lambda: {"attachment": change.before.attachment},
        "replacement": lambda: {"new_color": after.color, "new_shape": after.shape},
        "size": lambda: {"new_size": after.size},
        "color": lambda: {"new_color": after.color},
        "pose": lambda: {"new_pose": after.pose},
        "text": lambda: {"new_word": after.word},
        "count": lambda: {"new_count": after.count},
    }
    if change.op in details:
        slots.update(details[change.op]())
    return slots


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
    "attributes" are the change's details (camera move / light) and "location" follows "category".
    """
    if not truth:
        ok = parsed.no_change and not parsed.changes
        return [(None, dict.fromkeys(("category", "attributes", "location", "exact"), ok))], ok
    items = []
    for t in truth:
        same_op = [p for p in parsed.changes if p["op"] == t["op"]]
        if "kind" in t:
            keys = [k for k in ATTRIBUTE_SLOTS if k in t]
            attributes = any(all(p.get(k) == t[k] for k in keys) for p in same_op)
            location = any(p.get("loc") == t["loc"] for p in same_op)
        else:
            attributes = any(p == t for p in same_op)
            location = bool(same_op)
        items.append((t["op"], {"category": bool(same_op), "attributes": attributes, "location": location,
                                "exact": t in same_op}))  # fmt: skip
    exact = all(s["exact"] for _, s in items) and len(parsed.changes) == len(truth)
    return items, exact
