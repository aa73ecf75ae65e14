"""CLEVR-Change (Park et al., ICCV 2019), read exactly as released (``clevr_change.tar.gz`` -> ``data/``)::

    images/CLEVR_default_%06d.png         "before"
    sc_images/CLEVR_semantic_%06d.png     "after", semantic change
    nsc_images/CLEVR_nonsemantic_%06d.png "after", distractor (viewpoint / illumination only)
    change_captions.json      {"CLEVR_default_%06d.png": [caption, ...]}
    no_change_captions.json   the same keys -> no-change sentences
    splits.json               {"train": [int scene id, ...], "val": [...], "test": [...]}
    type_mapping.json         {"color" | "material" | "move" | "drop" | "add": ["%06d.png", ...]}

Each scene id of a split gives two pairs: the change pair ``"%06d.png"`` (category from ``type_mapping.json``,
``material`` reported as ``texture``) and the distractor pair ``"%06d.png_n"`` (category ``distractor``): all
change pairs in split order, then all distractor pairs, as the official evaluation script orders its ground truth.
File names are built from the ids, never from positions in a directory listing (RCC's loader does the latter
and silently misaligns when a file is missing).

Train-time augmentation (RCC ``rcc_dataset.py``): with probability ``swap_prob`` per scene and epoch, the
distractor image takes the role of "before", so the change pair becomes (nonsemantic, semantic) and the
distractor pair (nonsemantic, default). Seeded by (seed, epoch, scene id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datamodules.annotations import Fields, PairRecord, read_json_dict, split_ids
from datamodules.errors import ConfigError, DataError, Problems
from datamodules.records import RecordDataConfig, RecordDataModule
from datamodules.registry import register_datamodule

TYPE_TO_CATEGORY = {"material": "texture"}  # the file's key -> the name papers (and our config) use
DISTRACTOR = "distractor"


@dataclass
class ClevrChangeConfig(RecordDataConfig):
    name: str = "clevr_change"
    categories: list[str] = field(
        default_factory=lambda: ["color", "texture", "add", "drop", "move", "distractor"]
    )  # texture = type_mapping.json's "material"
    # The "semantic change" column of papers.
    groups: dict[str, list[str]] = field(
        default_factory=lambda: {"semantic": ["color", "texture", "add", "drop", "move"]}
    )
    swap_prob: float = 0.5  # train only: distractor image as "before" with this probability (RCC); 0 = off

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.swap_prob <= 1.0:
            raise ConfigError(f"data.swap_prob must be in [0, 1], got {self.swap_prob}")


@register_datamodule("clevr_change")
class ClevrChangeDataModule(RecordDataModule):
    """CLEVR-Change; ``config``: a :class:`ClevrChangeConfig` (``conf/data/clevr_change.yaml``)."""

    benchmark = "clevr_change"
    config_class = ClevrChangeConfig
    config: ClevrChangeConfig

    @property
    def train_swap_prob(self) -> float:
        return self.config.swap_prob

    def index(self, split: str, problems: Problems) -> list[PairRecord]:
        """The change pair of every scene of ``split``, in split order, then every distractor pair."""
        root = self.root_path
        type_of = self._types(problems)
        change = self._captions(root / "change_captions.json", problems)
        no_change = self._captions(root / "no_change_captions.json", problems)
        changes: list[PairRecord] = []
        distractors: list[PairRecord] = []
        for scene, where in split_ids(root / "splits.json", split, problems, noun="scene id"):
            default = f"{root}/images/CLEVR_default_{scene:06d}.png"
            semantic = f"{root}/sc_images/CLEVR_semantic_{scene:06d}.png"
            nonsemantic = f"{root}/nsc_images/CLEVR_nonsemantic_{scene:06d}.png"
            key = f"CLEVR_default_{scene:06d}.png"
            same = {"source": f"splits.json {where}, scene {scene}", "swap_key": str(scene)}
            kind = type_of.get(scene)
            if kind is None:
                problems.add(
                    f"scene is in splits.json {where} but in no change type",
                    file=root / "type_mapping.json",
                    record=f"scene {scene}",
                )
            elif (captions := self._lookup(change, key, root / "change_captions.json", problems)) is not None:
                category = TYPE_TO_CATEGORY.get(kind, kind)
                changes.append(
                    PairRecord(
                        pair_id=f"{scene:06d}.png",
                        before=default,
                        after=semantic,
                        captions=captions,
                        categories=(category,),
                        swapped=(nonsemantic, semantic),
                        **same,
                    )
                )
            captions = self._lookup(no_change, key, root / "no_change_captions.json", problems)
            if captions is not None:
                distractors.append(
                    PairRecord(
                        pair_id=f"{scene:06d}.png_n",
                        before=default,
                        after=nonsemantic,
                        captions=captions,
                        categories=(DISTRACTOR,),
                        swapped=(nonsemantic, default),
                        **same,
                    )
                )
        return changes + distractors

    # ------------------------------------------------------------------ helpers
    def _types(self, problems: Problems) -> dict[int, str]:
        """scene id -> change type, from ``type_mapping.json`` (each id in at most one type)."""
        path = self.root_path / "type_mapping.json"
        type_of: dict[int, str] = {}
        for kind, names in read_json_dict(path).items():
            if not isinstance(names, list):
                raise DataError(
                    f"'{kind}' must be a list of \"%06d.png\" ids, got {type(names).__name__}", file=path
                )
            for i, name in enumerate(names):
                where = f"'{kind}' item {i}"
                stem = name[:-4] if isinstance(name, str) and name.endswith(".png") else None
                if stem is None or not stem.isdigit():
                    problems.add(f'expected an id like "000123.png", got {name!r}', file=path, record=where)
                    continue
                scene = int(stem)
                if scene in type_of:
                    problems.add(
                        f"scene {scene} is also listed under '{type_of[scene]}'", file=path, record=where
                    )
                    continue
                type_of[scene] = kind
        return type_of

    @staticmethod
    def _captions(path: Any, problems: Problems) -> dict | None:
        """The caption file as a dict; ``None`` (inspection only) when it is missing."""
        if not path.exists():
            problems.missing_file(
                "caption file not found (it ships in clevr_change.tar.gz); references cannot be counted",
                file=path,
            )
            return None
        return read_json_dict(path, what="caption file")

    @staticmethod
    def _lookup(captions: dict | None, key: str, path: Any, problems: Problems) -> tuple[str, ...] | None:
        """The captions of ``key``; ``()`` when the file is missing (inspection), ``None`` after a problem."""
        if captions is None:
            return ()
        if key not in captions:
            problems.add("scene is in splits.json but has no captions", file=path, record=f"key {key!r}")
            return None
        found = Fields(captions, file=path, where=f"key {key!r}", problems=problems).str_list(
            key, captions=True
        )
        return None if found is None else tuple(found)
