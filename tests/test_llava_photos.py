"""The kit started from a LLaVA-OneVision folder is LLaVA-OneVision at step 0 on photos as users have them: non-square
files of several sizes on disk, read by the kit's own DataModule (DATA=pairs) and preprocessing, against
``LlavaOnevisionProcessor`` + ``LlavaOnevisionForConditionalGeneration`` on the same files, with the chat template of
the kit's rule (lightning_modules/model/prompt.py) rendered by ``processor.apply_chat_template``.

Three folder layouts: the twin with only a tokenizer template (Qwen2-Instruct's), the twin with LLaVA-OneVision's
processor saved by ``save_pretrained`` (``chat_template.jinja``, ``processor_config.json``, no
``preprocessor_config.json``), and the layout of folders released with transformers 4 (``chat_template.json``,
``preprocessor_config.json``, the tokenizer's own Qwen2 template in ``tokenizer_config.json``).
"""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from support.llava_inputs import INSTRUCTION, twin_config

from datamodules.contract import collate_pairs
from experiments.common.assembly import assemble

pytestmark = pytest.mark.usefixtures("one_thread")

# (before, after) sizes (width, height): 16:9, 2:3 portrait, odd sizes (an odd padding remainder), mixed ratios in
# one pair, a square of another size than the model's 32 px, a strip.
SIZES = [
    ((48, 27), (48, 27)),
    ((30, 45), (30, 45)),
    ((41, 33), (64, 36)),
    ((50, 50), (23, 61)),
    ((70, 9), (9, 70)),
]


def photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour content (a bilinear upsampling of coarse noise), like a photo rather than per-pixel noise."""
    coarse = rng.integers(0, 256, (height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A DATA=pairs folder: PNG / JPEG files of the sizes above (test split), and two training pairs."""
    root = tmp_path_factory.mktemp("photos")
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    records = []
    for i, sizes in enumerate(SIZES + SIZES[:2]):
        names = [f"img/{i}_before.png", f"img/{i}_after.jpg"]
        for name, size in zip(names, sizes):
            photo(rng, *size).save(root / name, quality=95)
        split = "test" if i < len(SIZES) else "train"
        records.append(
            {"id": f"p{i}", "before": names[0], "after": names[1], "captions": ["a"], "split": split}
        )
    (root / "pairs.json").write_text(json.dumps(records))
    return root


@pytest.fixture(scope="module", params=["tokenizer", "processor", "released"])
def folder(request, llava_twin, llava_twin_processor, tmp_path_factory):
    if request.param == "tokenizer":
        return llava_twin
    if request.param == "processor":
        return llava_twin_processor
    from support.llava_twin import save_processor

    released = tmp_path_factory.mktemp("llava_twin_released")
    shutil.copytree(llava_twin, released, dirs_exist_ok=True)
    return save_processor(released, legacy=True)


def kit(folder, photos, *overrides):
    paths = [f"data.root={photos}", "data.num_workers=0"]
    parts = assemble(twin_config(folder, *paths, *overrides, groups={"data": "pairs"}))
    parts.datamodule.setup("test")
    test = parts.datamodule.dataset("test")
    batch = collate_pairs([test.get(i) for i in range(len(test))])
    return parts, batch


def reference(folder, photos, record: dict, *, system: str | None = "You are a helpful assistant.") -> dict:
    """transformers on the files: the folder's processor (the tokenizer-only twin: one built as the tests of
    test_init_from build it), its chat template, ``processor.apply_chat_template`` with typed content (the
    tokenizer's Qwen2 template: text content), then the processor on the two PIL images."""
    from support.llava_inputs import hf_processor
    from transformers import AutoProcessor

    has_processor = (folder / "processor_config.json").is_file()
    processor = AutoProcessor.from_pretrained(folder) if has_processor else hf_processor(folder)
    images = [Image.open(photos / record[k]) for k in ("before", "after")]
    if has_processor:
        user = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": INSTRUCTION}]
        messages = [{"role": "user", "content": user}]
        if system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
    else:
        messages = [{"role": "user", "content": f"<image>\n<image>\n{INSTRUCTION}"}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        text = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return processor(text=[text], images=[images], return_tensors="pt")


@pytest.fixture(scope="module")
def hf(llava_twin):
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(llava_twin).eval()


@pytest.fixture(scope="module")
def run(folder, photos):
    return kit(folder, photos)


def test_pixels_and_image_features_equal_llava_onevision_s_on_non_square_files(run, folder, photos, hf):
    parts, batch = run
    assert parts.module.image_spec.pipeline == "llava_onevision"
    records = json.loads((photos / "pairs.json").read_text())
    with torch.no_grad():
        blocks = parts.module.model.encode(batch["before"], batch["after"]).images
    for i, pair_id in enumerate(batch["pair_id"]):
        record = next(r for r in records if r["id"] == pair_id)
        inputs = reference(folder, photos, record)
        pixels = inputs["pixel_values"][:, 0]  # each image's one view (several images: no AnyRes tiles)
        assert torch.equal(pixels[0], batch["before"][i]) and torch.equal(pixels[1], batch["after"][i]), (
            pair_id
        )
        with torch.no_grad():
            features = hf.model.get_image_features(
                pixel_values=inputs["pixel_values"],
                image_sizes=inputs["image_sizes"],
                batch_num_images=inputs["batch_num_images"],
            ).pooler_output
        for image in range(2):
            diff = (features[image] - blocks[image][i]).abs().max()
            assert diff <= 1e-5, (pair_id, image, diff)


def test_prompt_and_greedy_caption_equal_transformers_generate(run, folder, photos, hf):
    """The rule's template, rendered as transformers renders it, and greedy decoding from step 0 on."""
    parts, batch = run
    module = parts.module.eval()
    image = module.tokenizer.convert_tokens_to_ids("<image>")
    records = {r["id"]: r for r in json.loads((photos / "pairs.json").read_text())}
    eos = module.model.eos_token_id
    for i, pair_id in enumerate(batch["pair_id"]):
        inputs = reference(folder, photos, records[pair_id])
        text_0, text_1, text_2 = (s.tolist() for s in module.model.text_segments)
        assert inputs["input_ids"][0].tolist() == text_0 + [image] * 17 + text_1 + [image] * 17 + text_2
        with torch.no_grad():
            out = hf.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=eos, pad_token_id=0)
        theirs = out[0, inputs["input_ids"].shape[1] :].tolist()
        theirs = theirs[: theirs.index(eos)] if eos in theirs else theirs
        mine, _ = module.model.generate(
            batch["before"][i : i + 1], batch["after"][i : i + 1], max_new_tokens=12
        )
        assert mine == [theirs] and len(theirs) > 3, pair_id


def test_an_image_processor_the_kit_does_not_reproduce_is_one_line(llava_twin, tmp_path, capsys):
    """A LLaVA-OneVision image processor set to another resample filter than the released bicubic: refused by name,
    not silently prepared otherwise."""
    from experiments import train

    folder = tmp_path / "bilinear"
    shutil.copytree(llava_twin, folder)
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**settings, "resample": 2}))
    assert train.main(["--args", f"model.init_from={folder}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {folder}/preprocessor_config.json: resample=2;")
