"""Builders of tiny, hand-made copies of each benchmark's released layout (FORMATS.md section 7), and helpers.

Every builder writes into a folder and returns a :class:`Mini` that says where things are, so one test can be
parametrised over all loaders: ``mini.first_image(split)`` is an image of the first pair of a split,
``mini.annotation(split)`` the file that lists that split's records.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
if not BENCHMARKS.is_dir():  # a checkout elsewhere: the shared folder next to the repository
    BENCHMARKS = Path("/work/shared/benchmarks")


def write_image(
    path: Path, size: tuple[int, int] = (12, 8), color: tuple[int, int, int] = (200, 30, 30)
) -> Path:
    """A small RGB image in the format its extension names (png, jpg/jpeg/JPG, gif)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}.get(path.suffix.lower(), "PNG")
    image.save(path, fmt)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


@dataclass
class Mini:
    name: str  # data config name
    root: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)  # split -> an image of that split's first pair
    files: dict[str, Path] = field(default_factory=dict)  # split -> the annotation file listing its records

    def first_image(self, split: str = "test") -> Path:
        return self.images[split]

    def annotation(self, split: str = "test") -> Path:
        return self.files[split]


def make_dm(name: str, root: Path | str, **overrides: Any):
    """A DataModule from ``conf/data/<name>.yaml`` + overrides, small and single-process for tests."""
    from omegaconf import OmegaConf

    from datamodules import build_datamodule
    from experiments.common.config import load_config

    data = OmegaConf.to_container(load_config(groups={"data": name}).data)
    data.update(root=str(root), batch_size=4, eval_batch_size=4, num_workers=0)
    data.update(overrides)
    return build_datamodule(data, image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), seed=7)


# ------------------------------------------------------------------------------------------------ CLEVR-Change
CLEVR_TYPES = ["color", "material", "add", "drop", "move"]  # type of scene id = CLEVR_TYPES[id % 5]
CLEVR_SPLITS = {"train": [7, 1, 3, 6, 10], "val": [9, 5], "test": [11, 0, 2, 8, 4]}  # 12 is in no split
DEFAULT, SEMANTIC, NONSEMANTIC = (200, 30, 30), (30, 200, 30), (30, 30, 200)


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


# ------------------------------------------------------------------------------------------------ Spot-the-Diff
SPOT = {
    "train": [
        {"img_id": "76", "sentences": ["there are no differences"]},
        {"img_id": "3", "sentences": [""]},  # blank, as released: kept for eval, not trained on
        {"img_id": "12", "sentences": ["the car is gone", "a person appeared"]},
        {"img_id": "13", "sentences": ["the door is open"]},
    ],
    "val": [
        {"img_id": "20", "sentences": ["the bike moved"]},
        {"img_id": "21", "sentences": ["a tree is gone"]},
    ],
    "test": [
        {
            "img_id": "256",
            "sentences": ["person with umbrella is gone", "person with red coat is moved", "car is missing"],
        },
        {"img_id": "294", "sentences": ["a red car is not in the left image"]},
        {"img_id": "256", "sentences": ["the umbrella person left"]},  # repeated id: merged in file order
        {"img_id": "187", "sentences": ["i see no differences between the two images"]},
    ],
}


def make_spot(root: Path) -> Mini:
    for split, records in SPOT.items():
        write_json(root / "annotations" / f"{split}.json", records)
        for r in records:
            write_image(root / "resized_images" / f"{r['img_id']}.png", (16, 16), DEFAULT)
            write_image(root / "resized_images" / f"{r['img_id']}_2.png", (16, 16), SEMANTIC)
            write_image(root / "resized_images" / f"{r['img_id']}_diff.jpg", (16, 16))
    return Mini(
        "spot_the_diff",
        root,
        images={s: root / "resized_images" / f"{r[0]['img_id']}_2.png" for s, r in SPOT.items()},
        files={s: root / "annotations" / f"{s}.json" for s in SPOT},
    )


# ------------------------------------------------------------------------------------------------ IEdit
IEDIT = {
    "train": [
        {"img0": "a_0.jpg", "img1": "a_1.jpg", "sents": ["change the back ground"], "uid": "Zhopped_2"},
        {"img0": "b_0.png", "img1": "b_1.JPG", "sents": ["make it brighter"], "uid": "Zhopped_3"},
        {"img0": "c_0.jpeg", "img1": "c_1.gif", "sents": ["remove the dog"], "uid": "Reddit_7"},
    ],
    "valid": [
        {
            "img0": "d_0.jpg",
            "img1": "d_1.png",
            "sents": ["Add a hat.", 'put a "hat" on him', "hat"],
            "uid": "Reddit_9",
        }
    ],
    "test": [
        {
            "img0": "e_0.jpg",
            "img1": "e_1.gif",
            "sents": ["take the people out", "Remove the two people!", "no people"],
            "uid": "Reddit_1052",
        },
        {
            "img0": "e_0.jpg",
            "img1": "e_1.gif",
            "sents": ["Make it sunny", "brighten the sky", "sunny day"],
            "uid": "Reddit_1053",
        },
        {
            "img0": "f_0.png",
            "img1": "f_1.jpg",
            "sents": ["Crop the baby", "cut out the baby, add a cap", "baby"],
            "uid": "Reddit_1071",
        },
    ],
}


def make_iedit(root: Path, val_name: str = "valid.json") -> Mini:
    files = {}
    for split, records in IEDIT.items():
        name = val_name if split == "valid" else f"{split}.json"
        files["val" if split == "valid" else split] = write_json(root / name, records)
        for r in records:
            write_image(root / "images" / r["img0"], (20, 14), DEFAULT)
            write_image(root / "images" / r["img1"], (14, 20), SEMANTIC)
    # one RGBA png, as some releases have
    Image.new("RGBA", (10, 10), (10, 20, 30, 0)).save(root / "images" / "f_0.png")
    return Mini(
        "iedit",
        root,
        images={
            s: root / "images" / IEDIT["valid" if s == "val" else s][0]["img1"]
            for s in ("train", "val", "test")
        },
        files=files,
    )


# ------------------------------------------------------------------------------------------------ pairs / OmniDiff
LONG_CAPTION = (
    "In the second image, the small red ceramic mug that stood on the left edge of the wooden table next to the "
    "window has disappeared entirely. The rest of the scene, including the blue vase, the stack of books and the "
    "lamp in the right corner, is unchanged, and the lighting and the camera position are the same as before."
)


def pairs_records(prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for i in range(n):
            out.append(
                {
                    "id": f"{prefix}{split}_{i}",
                    "before": f"images/{split}_{i}_a.png",
                    "after": f"images/{split}_{i}_b.jpg",
                    "captions": [LONG_CAPTION if i == 0 else f"the mug {i} is gone", "something changed"],
                    "categories": ["disappearance"] if i % 2 == 0 else ["color"],
                    "split": split,
                }
            )
    return out


def make_pairs(root: Path, *, jsonl: bool = False, name: str = "pairs") -> Mini:
    records = pairs_records()
    for r in records:
        write_image(root / r["before"], (16, 12), DEFAULT)
        write_image(root / r["after"], (12, 16), SEMANTIC)
    path = root / ("pairs.jsonl" if jsonl else "pairs.json")
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        write_json(path, records)
    first = {}
    for r in records:
        first.setdefault(r["split"], root / r["after"])
    return Mini(name, root, images=first, files={s: path for s in ("train", "val", "test")})


def make_omnidiff(root: Path) -> Mini:
    """The provisional OmniDiff fixture (FORMATS.md 7.5): ``category`` (one label), other field names."""
    out: dict[str, list] = {}
    for r in pairs_records():
        # Even pairs are real photos, odd ones renders (each in its own folder, as the subset rule expects).
        folder = "Real/" if int(r["id"].rsplit("_", 1)[1]) % 2 == 0 else "Render/"
        before, after = (r[k].replace("images/", folder) for k in ("before", "after"))
        out.setdefault(r["split"], []).append(
            {
                "id": r["id"],
                "image_before": before,
                "image_after": after,
                "caption": r["captions"][0],  # one long caption, as a string
                "category": "Disappearance" if "disappearance" in r["categories"] else "color",
            }
        )
        write_image(root / before, (16, 12), DEFAULT)
        write_image(root / after, (12, 16), SEMANTIC)
    files = {s: write_json(root / f"{s}.json", recs) for s, recs in out.items()}
    images = {s: root / recs[0]["image_after"] for s, recs in out.items()}
    return Mini("omnidiff", root, images=images, files=files)


# ------------------------------------------------------------------------------------------------ Birds-to-Words
BIRDS_COLUMNS = [
    *("img1ObservationURL", "img1ImgURL", "img1Species", "img1Selection"),
    *("img2ObservationURL", "img2ImgURL", "img2Species", "img2Selection"),
    *("split", "annN", "description"),
]
# (photo 1, photo 2, split, annN, description): a pair's rows need not be adjacent; one pair has all five.
BIRDS_ROWS = [
    (
        647514,
        5595152,
        "train",
        1,
        "animal1 is brown and white with a squatty body . animal2 is multi-colored .",
    ),
    (647514, 5595152, "train", 2, "animal1 has a brown head and wings , with a pale breast ."),
    (1211, 98765, "train", 1, "animal1 is much smaller and shorter than animal2 ."),
    (
        647514,
        5595152,
        "train",
        3,
        '"animal1 has a ""speckled"" breast , animal2 a brown one ."',
    ),  # CSV-quoted
    (1211, 98765, "train", 2, 'animal2 has a "turquoise" head patch .'),  # a quote inside, not quoting
    (647514, 5595152, "train", 4, "animal1 has brown wings , animal2 has green wings ."),
    (647514, 5595152, "train", 5, "animal2 has a larger head and longer tail feathers ."),
    (3003, 4004, "val", 1, "animal1 has a longer beak ."),
    (3003, 4004, "val", 2, "animal2 is darker overall ."),
    (5005, 6006, "test", 1, "animal1 has a red crown and animal2 does not ."),
    (5005, 6006, "test", 2, "animal2 has white wing bars ."),
    (5005, 6006, "test", 3, "animal1 is perched , animal2 is flying ."),
    (7007, 5005, "test", 1, "animal2 has a red crown ."),
]
BIRDS_EXT = {98765: ".png", 4004: ".JPEG"}  # the rest: .jpg


def birds_row(p1: int, p2: int, split: str, ann: int, text: str) -> str:
    def photo(p: int) -> list[str]:
        return [
            f"https://www.inaturalist.org/photos/{p}",
            f"https://static.inaturalist.org/photos/{p}/medium.jpg?14{p:08d}",
            "Passer domesticus",
            "base" if p == p1 else "sameGenus",
        ]

    return "\t".join([*photo(p1), *photo(p2), split, str(ann), text])


def make_birds(root: Path) -> Mini:
    tsv = root / "birds-to-words-v1.0.tsv"
    root.mkdir(parents=True, exist_ok=True)
    tsv.write_text("\n".join(["\t".join(BIRDS_COLUMNS), *(birds_row(*r) for r in BIRDS_ROWS)]) + "\n")
    for p in {p for r in BIRDS_ROWS for p in r[:2]}:
        write_image(
            root / "images" / f"{p}{BIRDS_EXT.get(p, '.jpg')}", (20, 16), DEFAULT if p % 2 else SEMANTIC
        )
    first = {"train": 5595152, "val": 4004, "test": 6006}
    return Mini(
        "birds_to_words",
        root,
        images={s: root / "images" / f"{p}{BIRDS_EXT.get(p, '.jpg')}" for s, p in first.items()},
        files={s: tsv for s in first},
    )


# ------------------------------------------------------------------------------------------------ LLaVA-style
def llava_record(rid: Any, images: list[str], instruction: str, caption: str, **extra: Any) -> dict[str, Any]:
    human = "<image>\n<image>\n" + instruction
    return {
        "id": rid,
        "image": images,
        "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": caption}],
        **extra,
    }


LLAVA = {  # split -> records; records showing the same two images are one evaluation pair
    "train": [
        llava_record(
            "omni_1", ["scenes/1_a.jpg", "scenes/1_b.jpg"], "Describe the difference.", "the mug is gone"
        ),
        llava_record("omni_2", ["scenes/2_a.jpg", "scenes/2_b.png"], "What changed?", "the lamp is now on"),
        llava_record("omni_3", ["scenes/1_a.jpg", "scenes/1_b.jpg"], "What is different?", LONG_CAPTION),
        llava_record(4, ["scenes/3_a.jpg", "scenes/3_b.jpg"], "Compare the two images.", "a chair was added"),
    ],
    "val": [
        llava_record("omni_v1", ["scenes/v1_a.jpg", "scenes/v1_b.jpg"], "What changed?", "the door is open"),
        llava_record(
            "omni_v2", ["scenes/v1_a.jpg", "scenes/v1_b.jpg"], "Describe it.", "someone opened the door"
        ),
    ],
    "test": [
        llava_record(
            "omni_t1", ["scenes/t1_a.jpg", "scenes/t1_b.jpg"], "What changed?", "the car is red now"
        ),
        llava_record(
            "omni_t2", ["scenes/t2_a.jpg", "scenes/t2_b.jpg"], "What changed?", "two birds flew away"
        ),
        llava_record(
            "omni_t3", ["scenes/t1_a.jpg", "scenes/t1_b.jpg"], "Describe it.", "the car was repainted"
        ),
    ],
}
# One turn pair written with the other role names.
LLAVA["train"][1]["conversations"] = [
    {"from": "user", "value": "<image>\n<image>\nWhat changed?"},
    {"from": "assistant", "value": "the lamp is now on"},
]


def make_llava(root: Path) -> Mini:
    files = {split: write_json(root / f"{split}.json", records) for split, records in LLAVA.items()}
    for records in LLAVA.values():
        for r in records:
            write_image(root / r["image"][0], (18, 14), DEFAULT)
            write_image(root / r["image"][1], (14, 18), SEMANTIC)
    images = {s: root / records[0]["image"][1] for s, records in LLAVA.items()}
    return Mini("llava", root, images=images, files=files)


BUILDERS: dict[str, Callable[[Path], Mini]] = {
    "clevr_change": make_clevr_change,
    "clevr_dc": make_clevr_dc,
    "spot_the_diff": make_spot,
    "iedit": make_iedit,
    "omnidiff": make_omnidiff,
    "pairs": make_pairs,
    "birds_to_words": make_birds,
    "llava": make_llava,
}


def build_mini(name: str, root: Path) -> Mini:
    return BUILDERS[name](root)


# ------------------------------------------------------------------------------------------------ real files
def copy_real(sub: str, root: Path) -> Path:
    """Copy the released annotation files of ``sub`` (e.g. ``spot-the-diff``) into ``root``."""
    shutil.copytree(BENCHMARKS / sub, root, dirs_exist_ok=True)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the shared copy is read-only
    return root


def placeholder_images(paths: Any) -> int:
    """A 4x4 image under each name (format from the extension); returns the count."""
    n = 0
    for path in dict.fromkeys(paths):
        write_image(Path(path), (4, 4), tuple(int(x) for x in np.random.default_rng(n).integers(0, 255, 3)))
        n += 1
    return n
