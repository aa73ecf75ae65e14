"""OmniDiff (Liu et al., ICCV 2025): 324 real and rendered scenes, 12 change categories, ~60-word captions.

The release schema is NOT known yet (no public loader or annotation schema of the release was found). The
loader is therefore a small adapter around the kit's own pairs format (:mod:`datamodules.pairs`): the same
records, but each field may carry one of several plausible names, a single string is accepted where a list is
expected (one long caption, one category), and category labels are mapped onto the 12 configured ones. When a
file does not match, the error lists the fields the record does have and the config key that fixes it
(``data.fields.<field>=<name in the file>``). Confirm the schema on the real download, then pin ``data.fields``.

Captions are kept whole (multi-sentence, ~60 words): nothing here truncates; the model's
``model.max_caption_tokens`` / ``generation.max_new_tokens`` decide what is trained on and generated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datamodules.annotations import Fields
from datamodules.errors import ConfigError
from datamodules.pairs import FIELD_NAMES, PairsConfig, PairsDataModule
from datamodules.registry import register_datamodule

# Plausible names per field, tried in order after any data.fields override.
ALIASES: Mapping[str, tuple[str, ...]] = {
    "id": ("id", "pair_id", "uid", "image_id", "sample_id", "question_id"),
    "before": ("before", "image_before", "before_image", "img0", "image1", "source_image"),
    "after": ("after", "image_after", "after_image", "img1", "image2", "target_image"),
    "captions": (
        "captions",
        "caption",
        "sentences",
        "sents",
        "descriptions",
        "description",
        "references",
        "text",
    ),
    "categories": ("categories", "category", "change_type", "change_types", "types", "type", "label"),
    "split": ("split", "subset"),
}


@dataclass
class OmniDiffConfig(PairsConfig):
    name: str = "omnidiff"
    # The 12 categories as secondary summaries list them; the release's label strings are unknown:
    # map them with category_map (matching is case-insensitive).
    categories: list[str] = field(
        default_factory=lambda: [
            "viewpoint", "illumination", "addition", "disappearance", "removal", "replacement",
            "size", "color", "orientation", "pose", "text", "count",
        ]
    )  # fmt: skip
    category_map: dict[str, str] = field(
        default_factory=lambda: {
            "substitution": "replacement", "ocr": "text", "ocr/text": "text", "counting": "count"
        }
    )  # fmt: skip
    # canonical field -> its name in the file, e.g. {before: img_a, captions: description}
    fields: dict[str, str] = field(default_factory=dict)
    # OmniDiff-Real / OmniDiff-Render, scored separately (val/CIDEr/real, val/CIDEr/render): subset -> glob on the
    # before image's path (case-insensitive). PROVISIONAL too: with a field instead, subset_by: "field:<name>".
    subsets: dict[str, str] = field(default_factory=lambda: {"real": "*real*", "render": "*render*"})

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.fields) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError(f"data.fields: unknown field(s) {unknown}; known: {list(FIELD_NAMES)}")


@register_datamodule("omnidiff")
class OmniDiffDataModule(PairsDataModule):
    """OmniDiff through the pairs adapter; ``config``: an :class:`OmniDiffConfig` (``conf/data/omnidiff.yaml``):
    ``fields`` (canonical field -> its name in the file), ``category_map`` (label in the file -> one of
    ``data.categories``; matching is also case-insensitive)."""

    benchmark = "omnidiff"
    config_class = OmniDiffConfig
    config: OmniDiffConfig
    single_values = True

    def __init__(self, config: OmniDiffConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        fields = config.fields
        # An explicit name is the only one tried for its field: a typo must not fall back silently.
        self.field_names = {k: (fields[k],) if k in fields else ALIASES[k] for k in FIELD_NAMES}
        self.category_map = {str(k).strip().lower(): str(v) for k, v in config.category_map.items()}

    def missing_field_message(self, canonical: str, fields: Fields) -> str:
        return (
            f"this file does not match the OmniDiff adapter: no field for '{canonical}' "
            f"(looked for {list(self.field_names[canonical])}); fields found: {fields.keys()}. "
            f"Set data.fields={{{canonical}: <the name in your file>}}"
        )

    def map_categories(self, categories: list[str], fields: Fields) -> tuple[str, ...]:
        known = {c.lower(): c for c in self.categories}
        out = []
        for label in categories:
            key = label.strip().lower()
            target = self.category_map.get(key, key)
            if known and target.lower() not in known:
                fields.fail(
                    f"unknown change category {label!r}; known: {self.categories} "
                    f"(map it with data.category_map: {{{label!r}: <one of them>}})"
                )
                return ()
            out.append(known.get(target.lower(), target))
        return tuple(out)
