"""The embedded benchmark's captions: references name the changed object, templates of one operation carry the
same slots, and the parser reads every template and every reference back to the true change."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from support.synthetic import LABELS, only

from datamodules.synthetic.captions import expand, fill, identify, parse_caption
from datamodules.synthetic.changes import sample_pair
from datamodules.synthetic.grammar import NO_CHANGE_TEMPLATES, TEMPLATES, VOCAB, change_slots
from datamodules.synthetic.scenes import COLORS
from datamodules.synthetic.spec import OPERATIONS, GeneratorConfig


# ---------------------------------------------------------------------------------------------- captions
@pytest.mark.parametrize("style", ["short", "long"])
def test_references_name_the_changed_object(style):
    for op in OPERATIONS:
        gen = only(op, caption_style=style)
        for index in range(5):
            spec = sample_pair(gen, "val", index)
            assert 3 <= len(spec.captions) <= 5 and len(set(spec.captions)) == len(spec.captions)
            truth = change_slots(spec.changes[0])
            for caption in spec.captions:
                words = caption.replace(",", " ").replace(".", " ").split()
                if "color" in truth:
                    assert truth["color"] in words, (op, caption)
                if "shape" in truth:
                    assert truth["shape"] in words, (op, caption)
                if "kind" in truth and truth["kind"] in ("figure", "sign"):
                    assert truth["kind"] in words, (op, caption)
                if "size" in truth:
                    assert truth["size"] in words, (op, caption)
                if style == "long":
                    assert len(words) >= 20, caption
                else:
                    assert len(words) <= 20, caption


def test_templates_of_an_operation_carry_the_same_slots():
    for op, (kinds, templates) in TEMPLATES.items():
        for kind in kinds:
            slot_sets = {
                frozenset(k.split(":")[0] for k in re.findall(r"\{([a-z_:]+)\}", expand(t, kind)) if k != "a")
                for t in templates
            }
            assert len(slot_sets) == 1, (op, kind, slot_sets)


class _Pick(random.Random):
    """``choice`` takes the k-th item (round robin): fills every phrase variant of every slot in turn."""

    def __init__(self, k: int) -> None:
        super().__init__(0)
        self.k = k

    def choice(self, seq):
        return seq[self.k % len(seq)]


def test_parser_recovers_every_template_with_every_phrase():
    """Exhaustive over templates x object kinds x each slot's values x each phrase of a value."""
    for op, (kinds, templates) in TEMPLATES.items():
        for kind, template in itertools.product(kinds, templates):
            text = expand(template, kind)
            slots = sorted({k.split(":")[0] for k in re.findall(r"\{([a-z_]+)(?::[a-z]+)?\}", text)} - {"a"})
            forms = {
                s: next(k for k in re.findall(r"\{([a-z_:]+)\}", text) if k.split(":")[0] == s) for s in slots
            }
            n_values = max(len(VOCAB[forms[s]]) for s in slots)
            for v, k in itertools.product(range(n_values), range(3)):
                truth = {"op": op, **({"kind": kind} if kind else {})}
                for j, s in enumerate(slots):
                    values = list(VOCAB[forms[s]])
                    truth[s] = values[(v + j) % len(values)]
                caption = fill(text, truth, _Pick(k))
                for lead in ("", "in the second image, "):
                    parsed = parse_caption(lead + caption)
                    assert parsed.changes == [truth], (caption, parsed, truth)


@pytest.mark.parametrize("style,max_changes", [("short", 1), ("short", 3), ("long", 1), ("long", 3)])
def test_parser_recovers_the_true_change_from_every_reference(style, max_changes):
    gen = GeneratorConfig(labels=LABELS, caption_style=style, max_changes=max_changes, no_change_fraction=0.1)
    for index in range(300):
        spec = sample_pair(gen, "train", index)
        truth = [change_slots(c) for c in spec.changes]
        for caption in spec.captions:
            items, exact = identify(parse_caption(caption), truth)
            assert exact, (caption, parse_caption(caption), truth)


def test_parser_rejects_a_caption_naming_the_wrong_object():
    spec = sample_pair(only("color"), "val", 3)
    truth = [change_slots(spec.changes[0])]
    caption = spec.captions[0]
    color, loc = truth[0]["color"], truth[0]["loc"]
    other_color = next(c for c in COLORS if c not in caption.split())
    wrong_color = caption.replace(f" {color} ", f" {other_color} ", 1)
    (item,), exact = identify(parse_caption(wrong_color), truth)
    assert item[1]["category"] and not item[1]["attributes"] and item[1]["location"] and not exact
    phrase = next(p for p in sorted(VOCAB["loc"][loc], key=len, reverse=True) if p in caption)
    other_loc = VOCAB["loc"][(loc + 1) % 9][0]
    (item,), exact = identify(parse_caption(caption.replace(phrase, other_loc)), truth)
    assert item[1]["category"] and item[1]["attributes"] and not item[1]["location"] and not exact
    assert identify(parse_caption("  " + caption.upper().replace(" ", "  ") + " ."), truth)[
        1
    ]  # spacing, case
    (item,), exact = identify(parse_caption(NO_CHANGE_TEMPLATES[0]), truth)
    assert not any(item[1].values()) and not exact
    (item,), exact = identify(parse_caption("blah blah"), truth)
    assert not exact and not parse_caption("blah blah").parsed
