"""The caption grammar of the embedded benchmark: vocabulary, templates, and the slots of a change.

A change is described by **slots** (:func:`change_slots`): the operation, the object's kind and its naming
attributes (size, colour, shape / word / count and members), its cell (``loc``) and the change's details
(new colour, new size, new word, the attachment taken off, the camera move, the light...). A **template** is a
string with ``{slot}`` / ``{slot:form}`` placeholders (``{the_np}`` / ``{a_np}`` / ``{np}``: the object's noun
phrase, ``{a}``: "a" or "an"). Every phrase of a slot maps back to one value, so each template compiles to a
regular expression that recovers the slots (:mod:`datamodules.synthetic.captions`). Rule checked by the
tests: all templates of an operation carry the same slots, so any reference names the whole change.

Styles: ``short`` is one CLEVR-Change-like sentence per change ("the small red triangle in the top left turned
blue"); ``long`` is OmniDiff-like, tens of words: an optional lead-in + the change sentence, a sentence on what
the object looks like / what stayed the same about it (``DETAILS``), and one on the rest of the scene
(``CONTEXT``).
"""

from __future__ import annotations

from collections.abc import Iterable

from datamodules.synthetic.scenes import CELL_NAMES, COLORS, SHAPES, WORDS, Obj
from datamodules.synthetic.spec import Change

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
