"""Tiny copies of CLEVR-Change and CLEVR-DC as released: scene / pair ids in a split file, images named from
the ids, captions keyed by image name (the ids and splits are chosen so that order mistakes show)."""

from __future__ import annotations

from pathlib import Path

from support.files import DEFAULT, NONSEMANTIC, SEMANTIC, Mini, write_image, write_json

# ------------------------------------------------------------------------------------------------ CLEVR-Change
CLEVR_TYPES = ["color", "material", "add", "drop", "move"]  # type of scene id = CLEVR_TYPES[id % 5]
CLEVR_SPLITS = {"train": [7, 1, 3, 6, 10], "val": [9, 5], "test": [11, 0, 2, 8, 4]}  # 12 is in no split


def make_clevr_change(root: Path, scenes: int = 13) -> Mini:
    for i in range(scenes):
        write_image(root / "images" / f"CLEVR_default_{i:06d}.png", (24, 16), DEFAULT)
        write_image(root / "sc_images" / f"CLEVR_semantic_{i:06d}.png", (24, 16), SEMANTIC)
        write_image(root / "nsc_images" / f"CLEVR_nonsemantic_{i:06d}.png", (24, 16), NONSEMANTIC)
    keys = [f"CLEVR_default_{i:06d}.png" for i in range(scenes)]
    write_json(
        root / "change_captions.json",
        {
            k: [f"the tiny yellow cylinder turned brown {i}", "the small cube has moved"]
            for i, k in enumerate(keys)
        },
    )
    write_json(
        root / "no_change_captions.json",
        {k: ["the scene remains the same", "no change was made"] for k in keys},
    )
    write_json(root / "splits.json", CLEVR_SPLITS)
    order = ["color", "material", "move", "drop", "add"]  # the file's key order
    write_json(
        root / "type_mapping.json",
        {t: [f"{i:06d}.png" for i in range(scenes) if CLEVR_TYPES[i % 5] == t] for t in order},
    )
    first = {s: ids[0] for s, ids in CLEVR_SPLITS.items()}
    return Mini(
        "clevr_change",
        root,
        {"swap_prob": 0.0},
        images={s: root / "sc_images" / f"CLEVR_semantic_{i:06d}.png" for s, i in first.items()},
        files={s: root / "splits.json" for s in CLEVR_SPLITS},
    )


# ------------------------------------------------------------------------------------------------ CLEVR-DC
DC_BLOCK = 5  # ids per block: local 0-2 train, 3 val, 4 test


def dc_split(block: int = DC_BLOCK) -> dict[str, list[int]]:
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for b in range(6):
        splits["train"] += [b * block + i for i in range(3)]
        splits["val"].append(b * block + 3)
        splits["test"].append(b * block + 4)
    return splits


def make_clevr_dc(root: Path, layout: str = "raw") -> Mini:
    ids = range(6 * DC_BLOCK)
    captions = {
        i: (["no change was made"] if i >= 5 * DC_BLOCK else [f"the object {i} changed", "it changed"])
        for i in ids
    }
    if layout == "raw":
        for i in ids:
            write_image(root / "bef" / f"{i}.png", color=DEFAULT)
            write_image(root / "aft" / f"{i}.png", color=SEMANTIC)
        write_json(root / "split.json", dc_split())
        write_json(root / "captions.json", {str(i): c for i, c in captions.items()})
        image = lambda i: root / "aft" / f"{i}.png"  # noqa: E731
        split_file = root / "split.json"
    else:
        for i in ids:
            write_image(root / "images" / f"{i:06d}.png", color=DEFAULT)
            write_image(root / "sc_images" / f"{i:06d}.png", color=SEMANTIC)
        write_json(root / "splits.json", dc_split())
        write_json(root / "change_captions.json", {f"{i:06d}.png": c for i, c in captions.items()})
        image = lambda i: root / "sc_images" / f"{i:06d}.png"  # noqa: E731
        split_file = root / "splits.json"
    return Mini(
        "clevr_dc",
        root,
        {"block_size": DC_BLOCK},
        images={s: image(ids[0]) for s, ids in dc_split().items()},
        files={s: split_file for s in ("train", "val", "test")},
    )
