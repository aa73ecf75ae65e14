"""The M³Diff captioner: training reduces the loss, checkpoints reload alone, generation is consistent."""

from __future__ import annotations

import pytest
import torch
from support.captioner import CAPTIONS, TINY_MODULE, batch_of, fit, make_module

from experiments.common.config import load_config, to_container
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.tokenizer import train_caption_tokenizer


def loss_on(module: CaptionerModule, batch: dict) -> float:
    module.eval()
    with torch.no_grad():
        loss, _, _ = module.shared_step(batch, [c[0] for c in batch["captions"]])
    return loss.item()


def test_few_steps_reduce_the_loss(tmp_path):
    torch.manual_seed(0)
    module = make_module("optim.warmup_steps=2", "optim.lr_lm=2e-3", "optim.lr_mdp=2e-3")
    batch = batch_of(8)
    before = loss_on(module, batch)
    fit(module, 40, tmp_path)
    after = loss_on(module, batch)
    assert after < 0.6 * before, (before, after)


def test_mdp_off_builds_and_trains(tmp_path):
    module = make_module("mdp.enabled=false")
    assert module.model.mdp is None
    batch = batch_of(8)
    before = loss_on(module, batch)
    fit(module, 20, tmp_path)
    assert loss_on(module, batch) < before


def test_checkpoint_reloads_alone_and_generates_the_same(tmp_path):
    module = make_module()
    trainer = fit(module, 3, tmp_path)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    reloaded = CaptionerModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    batch = batch_of(4)
    module.eval(), reloaded.eval()
    assert module.caption(batch["before"], batch["after"]) == reloaded.caption(
        batch["before"], batch["after"]
    )


def test_kv_cache_does_not_change_the_tokens():
    """Greedy decoding with the KV cache and by recomputing every step (forced to full length)."""
    module = make_module().eval()
    batch = batch_of(4)
    args = dict(max_new_tokens=8, min_new_tokens=8)
    cached, _ = module.model.generate(batch["before"], batch["after"], **args)
    plain, _ = module.model.generate(batch["before"], batch["after"], use_cache=False, **args)
    assert cached == plain and all(len(ids) == 8 for ids in cached)


def test_beam_search_is_batch_invariant_and_one_beam_is_greedy():
    module = make_module().eval()
    batch = batch_of(4)
    beams, _ = module.model.generate(batch["before"], batch["after"], max_new_tokens=8, num_beams=3)
    alone = [
        module.model.generate(
            batch["before"][i : i + 1], batch["after"][i : i + 1], max_new_tokens=8, num_beams=3
        )[0][0]
        for i in range(4)
    ]
    assert beams == alone
    greedy, _ = module.model.generate(batch["before"], batch["after"], max_new_tokens=8)
    one_beam, _ = module.model.generate(batch["before"], batch["after"], max_new_tokens=8, num_beams=1)
    assert greedy == one_beam


def test_generation_is_batch_invariant():
    module = make_module("model.prompt='describe the change:'").eval()
    batch = batch_of(4)
    together, _ = module.model.generate(batch["before"], batch["after"], max_new_tokens=8)
    alone = [
        module.model.generate(batch["before"][i : i + 1], batch["after"][i : i + 1], max_new_tokens=8)[0][0]
        for i in range(4)
    ]
    assert together == alone


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [("siglip", "siglip-tiny"), ("clip", "clip-tiny"), ("vit_tiny_patch16_224", "timm:vit_tiny_patch16_224")],
)
def test_backbone_switch_changes_the_backbone(backbone, expected):
    cfg = load_config(groups={"backbone": backbone}, overrides=TINY_MODULE)
    assert cfg.backbone.name == expected
    tokenizer_json = train_caption_tokenizer(CAPTIONS * 10, vocab_size=cfg.model.lm.vocab_size)
    module = CaptionerModule(config=to_container(cfg), tokenizer_json=tokenizer_json)
    assert module.config["backbone"]["name"] == expected
    out = module.model.encode(*[batch_of(2)[k] for k in ("before", "after")])
    assert out.embeds.shape[0] == 2


def test_caption_loss_ignores_prefix_and_padding():
    module = make_module().eval()
    batch = batch_of(2)
    ids, mask = module.tokenize(["the red square moved left", "a blue circle"])
    assert (ids[:, -1] == module.tokenizer.pad_token_id).any() and mask.sum(1).tolist()[0] > mask.sum(
        1
    ).tolist()[1]
    with torch.no_grad():
        loss, logits = module.model(batch["before"], batch["after"], ids, mask)
    assert logits.shape[:2] == ids.shape
    manual = torch.nn.functional.cross_entropy(logits[mask.bool()], ids[mask.bool()])
    assert torch.allclose(loss, manual, atol=1e-5)


def test_lm_positions_cover_a_pooled_grid_that_does_not_divide():
    """48 px / patch 16 = a 3x3 grid; pooled by 2 with ceil_mode it is 2x2 = 4 tokens per image, not 9 // 4."""
    module = make_module("backbone.image_size=48", "model.token_pool=2")
    cfg = module.hparams.config
    prefix = module.model.encode(torch.zeros(1, 3, 48, 48), torch.zeros(1, 3, 48, 48)).embeds
    assert prefix.shape[1] == 2 * 4
    needed = prefix.shape[1] + cfg["model"]["max_caption_tokens"] + cfg["generation"]["max_new_tokens"]
    assert module.model.lm.config.n_positions >= needed


@pytest.mark.parametrize("kind", ["sincos", "learned"])
def test_image_positions_tell_the_cells_apart_and_reload(kind, tmp_path):
    """model.image_positions: the same 2-D signal on both images' tokens, as large as the tokens themselves;
    learned: a trained parameter that starts from the sine-cosine table and is saved in the checkpoint."""
    from lightning_modules.model.m3diff import sincos_2d

    module = make_module(f"model.image_positions={kind}")  # 32 px, patch 16: a 2x2 grid
    table = module.model.image_pos
    assert table.shape == (4, 64) and torch.equal(table.detach(), sincos_2d(2, 2, 64))
    assert torch.cdist(table, table).fill_diagonal_(float("inf")).min() > 0.5  # every cell its own vector
    assert table.pow(2).mean().sqrt().item() == pytest.approx(0.5**0.5, rel=1e-6)
    plain = make_module("model.image_positions=none")
    plain.model.load_state_dict(module.model.state_dict(), strict=False)
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        with_pos, without = module.model.encode(x, x), plain.model.encode(x, x)
    for i in range(2):
        assert torch.allclose(with_pos.images[i] - without.images[i], table.detach(), atol=1e-5)
    assert ("model.image_pos" in module.state_dict()) == (kind == "learned")
    trainer = fit(module, 2, tmp_path)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    again = CaptionerModule.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu", weights_only=True)
    assert torch.equal(again.model.image_pos, module.model.image_pos)
    if kind == "learned":
        assert not torch.equal(module.model.image_pos.detach(), sincos_2d(2, 2, 64))  # it was trained
    with pytest.raises(ValueError, match="image_positions"):
        make_module("model.image_positions=rope")
