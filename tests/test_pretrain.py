"""``make pretrain``: scene descriptions fit the text tower, the run is bit-for-bit reproducible, TensorBoard gets
the loss and the held-out retrieval score, and the file loads as ``backbone.pretrained``; the default backbone
starts from the committed file."""

from __future__ import annotations

import hashlib
import random

import pytest
import torch

from datamodules.synthetic.scene_text import CONTEXT_LENGTH, VOCAB, describe, encode, scene_sample
from datamodules.synthetic.scenes import sample_scene
from experiments.common.config import load_config
from lightning_modules.scene_pretrainer import retrieval_recall

TINY = "max_steps=4 batch_size=8 val_scenes=16 val_every=2 warmup_steps=1 num_workers=0"  # at 128 px, as the kit loads it


def test_descriptions_name_every_object_and_fit_the_context():
    longest = 0
    for seed in range(300):
        scene = sample_scene(random.Random(seed), 8, 8)  # the most objects a scene can hold
        words = describe(scene, "shadow_left")
        longest = max(longest, len(words))
        assert words.count("|") == len(scene.objects)
        assert encode(words).shape == (CONTEXT_LENGTH,)
    assert longest <= CONTEXT_LENGTH
    assert len(VOCAB) <= 128 and len(set(VOCAB)) == len(VOCAB)  # the tiny text tower's vocabulary size


def test_scene_samples_are_deterministic_and_splits_differ():
    kwargs = dict(side=32, noise=3.0, jitter=0.04, objects=(3, 6))
    a, b = scene_sample(0, "train", 5, **kwargs), scene_sample(0, "train", 5, **kwargs)
    assert a[0].tobytes() == b[0].tobytes() and a[1] == b[1]
    assert scene_sample(0, "val", 5, **kwargs)[1] != a[1]


def test_retrieval_recall_counts_the_diagonal():
    features = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    assert retrieval_recall(features, features)["i2t_R@1"] == 1.0
    shuffled = retrieval_recall(features, features.roll(1, dims=0))
    assert shuffled["i2t_R@1"] == 0.0 and shuffled["chance"] == pytest.approx(1 / 8)


def test_pretrain_is_reproducible_logs_retrieval_and_loads_as_backbone_weights(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import mdp
    from experiments.pretrain import main

    digests = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.safetensors"
        assert main(["--args", f"{TINY} out={out} logs_dir={tmp_path / run}"]) == 0
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    events = EventAccumulator(str(tmp_path / "a" / "pretrain" / "version_0"))
    events.Reload()
    assert {"train/loss", "val/i2t_R@1", "val/t2i_R@1"} <= set(events.Tags()["scalars"])
    backbone = mdp.build_backbone("siglip-tiny", layers=[1, 3, 5], pretrained=str(tmp_path / "a.safetensors"), image_size=32)  # fmt: skip
    random_init = mdp.build_backbone("siglip-tiny", layers=[1, 3, 5], pretrained=None, image_size=32)
    images = torch.randn(2, 3, 32, 32)
    assert not torch.equal(backbone(images)[0], random_init(images)[0])
    assert main(["--args", "no_such_key=1"]) == 2


def test_default_backbone_starts_from_the_committed_scene_weights():
    from lightning_modules.model.build import KIT_ROOT, checkout_path

    pretrained = load_config().backbone.pretrained
    assert pretrained == "experiments/weights/siglip-tiny-scenes.safetensors"
    path = KIT_ROOT / pretrained
    assert path.is_file() and path.stat().st_size <= 10 * 2**20
    assert checkout_path(pretrained) in (pretrained, str(path))
    assert checkout_path("/abs/missing.bin") == "/abs/missing.bin"
