"""Tiny copies of the benchmarks released as lists of records: Spot-the-Diff, IEdit, the kit's pairs format and
the provisional OmniDiff form, Birds-to-Words (a TSV) and LLaVA-style conversations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from support.files import DEFAULT, SEMANTIC, Mini, write_image, write_json

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
    """The provisional OmniDiff fixture (its release schema is unknown): ``category`` (one label), other field
    names."""
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
