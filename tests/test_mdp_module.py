"""The MDP module: shapes, gradients, difference maps, every switch, a numeric pin, input errors."""

import math

import pytest
import torch

import mdp
from mdp import MDP, MDPConfig

B, C = 2, 32


pytestmark = pytest.mark.usefixtures("one_thread")


def feats(num_layers, tokens, *, seed=0, batch=B, dim=C):
    g = torch.Generator().manual_seed(seed)
    counts = tokens if isinstance(tokens, list) else [tokens] * num_layers
    return [torch.randn(batch, n, dim, generator=g) for n in counts]


def build(**fields):
    torch.manual_seed(0)
    fields.setdefault("dim", C)
    fields.setdefault("num_layers", 3)
    return MDP(**fields).eval()


def param_names(module):
    return [n for n, _ in module.named_parameters()]


# --- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2, 4])
@pytest.mark.parametrize("tokens", [1, 10, 49])
def test_output_shapes(num_layers, tokens):
    m = build(num_layers=num_layers)
    out = m(feats(num_layers, tokens, seed=1), feats(num_layers, tokens, seed=2))
    assert out.before.shape == out.after.shape == (B, tokens, C)
    assert out.layer_weights.shape == (B, num_layers)
    assert out.diff_maps.shape == (B, num_layers, tokens)
    assert torch.allclose(out.layer_weights.sum(1), torch.ones(B))
    side = math.isqrt(tokens)
    assert out.grid == ((side, side) if side * side == tokens else None)


def test_feature_maps_are_accepted_and_keep_their_grid():
    m = build(num_layers=2)
    g = torch.Generator().manual_seed(0)
    a = [torch.randn(B, C, 4, 6, generator=g) for _ in range(2)]
    b = [torch.randn(B, C, 4, 6, generator=g) for _ in range(2)]
    out = m(a, b)
    assert out.before.shape == (B, 24, C) and out.grid == (4, 6)
    # (B, C, H, W) is flattened row-major into tokens: the same result as passing the tokens.
    tokens = m([x.flatten(2).transpose(1, 2) for x in a], [x.flatten(2).transpose(1, 2) for x in b])
    assert torch.allclose(out.before, tokens.before, atol=1e-6)


def test_different_token_counts_are_resampled_to_the_finest_grid():
    m = build(num_layers=3)
    out = m(feats(3, [16, 64, 4], seed=1), feats(3, [16, 64, 4], seed=2))
    assert out.before.shape == (B, 64, C) and out.grid == (8, 8)
    assert out.diff_maps.shape == (B, 3, 64)


def test_different_token_counts_without_a_known_grid_are_rejected():
    m = build(num_layers=2)
    with pytest.raises(ValueError, match="different token counts"):
        m(feats(2, [10, 64]), feats(2, [10, 64]))


@pytest.mark.parametrize(
    ("before", "after", "error", "match"),
    [
        (feats(2, 16), feats(2, 16), ValueError, "num_layers=3"),
        (feats(3, 16), feats(3, 9), ValueError, "differ in shape"),
        (feats(3, 16, dim=24), feats(3, 16, dim=24), ValueError, "channels but MDPConfig.dim=32"),
        (torch.zeros(3, B, 16, C), torch.zeros(3, B, 16, C), TypeError, "list of per-layer tensors"),
        (
            [torch.zeros(B, 16, C, dtype=torch.long)] * 3,
            [torch.zeros(B, 16, C, dtype=torch.long)] * 3,
            TypeError,
            "floating",
        ),
        ([torch.zeros(16, C)] * 3, [torch.zeros(16, C)] * 3, ValueError, r"\(B, N, C\)"),
        (feats(3, [16, 16, 16], batch=2)[:2] + feats(1, 16, batch=3), None, ValueError, "batch size"),
    ],
)
def test_bad_inputs_give_clear_errors(before, after, error, match):
    m = build(num_layers=3)
    with pytest.raises(error, match=match):
        m(before, before if after is None else after)


def test_config_validation():
    with pytest.raises(ValueError, match="difference"):
        MDPConfig(difference="mul")
    with pytest.raises(ValueError, match="fusion"):
        MDPConfig(fusion="cross")
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        MDPConfig(dim=30, num_heads=4)
    MDPConfig(dim=30, num_heads=4, fusion="add")  # heads are irrelevant without attention
    with pytest.raises(ValueError, match="num_layers"):
        MDPConfig(num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        MDPConfig(dropout=1.0)
    with pytest.raises(TypeError, match="gate"):
        MDPConfig(gate="yes")
    with pytest.raises(TypeError):
        MDPConfig(192)  # keyword-only
    with pytest.raises(TypeError, match="not both"):
        MDP(config=MDPConfig(), dim=8)
    with pytest.raises(TypeError, match="unknown fields"):
        MDP(dimension=8)
    cfg = MDPConfig(dim=64, num_layers=4, fusion="self", share_layers=True)
    assert MDPConfig(**cfg.to_dict()) == cfg
    assert MDP(config=cfg).config is cfg


# --- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"mlp_ratio": 2.0, "share_layers": True},
        {"fusion": "self", "difference": "subtract"},
        {"fusion": "add"},
        {"num_layers": 1},
    ],
    ids=["paper", "mlp-shared", "self-subtract", "add", "single-layer"],
)
def test_gradients_reach_every_parameter(fields):
    m = build(**fields).train()
    n = m.config.num_layers
    out = m(feats(n, 16, seed=1), feats(n, 16, seed=2))
    g = torch.Generator().manual_seed(3)
    loss = (out.before * torch.randn(out.before.shape, generator=g)).sum()
    loss = loss + (out.after * torch.randn(out.after.shape, generator=g)).sum()
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


# --- difference maps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"difference": "concat"},
        {"difference": "subtract", "gate": False},
        {"difference": "subtract", "fusion": "self"},
        {"fusion": "none", "gate": False},
    ],
)
def test_identical_inputs_give_zero_difference_maps(fields):
    m = build(**fields)
    x = feats(3, 25)
    out = m(x, [t.clone() for t in x])
    assert out.diff_maps.abs().max() < 1e-6
    assert torch.isfinite(out.before).all() and torch.isfinite(out.after).all()


def test_local_feature_change_lights_up_its_tokens():
    m = build()
    before = feats(3, 64)
    after = [t.clone() for t in before]
    changed = [9, 10, 17, 18]  # a 2x2 patch of the 8x8 grid
    for t in after:
        t[:, changed] += 3.0
    maps = m(before, after).diff_maps  # (B, L, N)
    assert set(maps.topk(4, dim=-1).indices.flatten().tolist()) == set(changed)
    assert maps[..., changed].min() > 10 * maps[..., [i for i in range(64) if i not in changed]].max()


def test_local_image_change_lights_up_the_changed_region_through_a_backbone():
    torch.manual_seed(0)
    backbone = mdp.build_backbone("vit-tiny", layers=[0, 1, 2], image_size=64).eval()
    m = MDP(dim=backbone.width, num_layers=3).eval()
    g = torch.Generator().manual_seed(1)
    before = torch.rand(B, 3, 64, 64, generator=g)
    after = before.clone()
    after[:, :, 16:32, 32:48] = torch.rand(B, 3, 16, 16, generator=g)  # one 16 px patch: token (1, 2)
    with torch.no_grad():
        out = m(backbone(backbone.spec.normalize(before)), backbone(backbone.spec.normalize(after)))
    h, w = out.grid
    assert (h, w) == (4, 4)
    hottest = out.diff_maps.argmax(dim=-1)  # (B, L): per pair and layer
    assert (hottest == 1 * w + 2).all(), hottest


# --- switches ---------------------------------------------------------------------------------


def test_gate_switch():
    a, b = feats(3, 16, seed=1), feats(3, 16, seed=2)
    plain = (torch.stack(a, 1) - torch.stack(b, 1)).norm(dim=-1)  # (B, L, N)
    off = build(gate=False)
    assert not any("gate" in n for n in param_names(off))
    assert torch.allclose(off(a, b).diff_maps, plain, atol=1e-5)  # documented: ||F1 - F2|| without a gate
    on = build(gate=True)
    assert sum(p.numel() for n, p in on.named_parameters() if "gate" in n) == 3 * (2 * C * C + C)
    assert not torch.allclose(on(a, b).diff_maps, plain, atol=1e-3)
    # The gate is shared by both images with "self first" input: swapping the images swaps the outputs.
    fwd, rev = on(a, b), on(b, a)
    assert torch.allclose(fwd.diff_maps, rev.diff_maps, atol=1e-5)


def test_add_fusion_with_subtraction_is_exactly_the_documented_formula():
    m = build(gate=False, difference="subtract", fusion="add", layer_weighting="uniform")
    assert param_names(m) == []
    a, b = feats(3, 16, seed=1), feats(3, 16, seed=2)
    out = m(a, b)
    # F~1 = F1 + (F1 - F2), F~2 = F2 + (F1 - F2) = F1; averaged over layers.
    assert torch.allclose(out.before, torch.stack([2 * x - y for x, y in zip(a, b)]).mean(0), atol=1e-5)
    assert torch.allclose(out.after, torch.stack(a).mean(0), atol=1e-5)


def test_concat_difference_is_the_documented_projection():
    m = build(gate=False, difference="concat", fusion="add", layer_weighting="uniform")
    a, b = feats(3, 16, seed=1), feats(3, 16, seed=2)
    out = m(a, b)
    deltas = [m.differences[i].proj(torch.cat([x, y, x - y], -1)) for i, (x, y) in enumerate(zip(a, b))]
    expected = torch.stack([x + d for x, d in zip(a, deltas)]).mean(0)
    assert torch.allclose(out.before, expected, atol=1e-5)
    assert sum(p.numel() for p in m.parameters()) == 3 * (3 * C * C + C)


def test_fusion_none_has_no_attention_or_difference_weights_and_ignores_the_partner():
    m = build(gate=False, fusion="none", layer_weighting="uniform")
    assert param_names(m) == []
    a, b, b2 = feats(3, 16, seed=1), feats(3, 16, seed=2), feats(3, 16, seed=3)
    assert torch.allclose(m(a, b).before, torch.stack(a).mean(0), atol=1e-6)
    assert torch.allclose(m(a, b).before, m(a, b2).before)


def test_attention_fusion_lets_each_image_see_the_difference():
    m = build(gate=False, fusion="attention")
    names = param_names(m)
    assert any("self_attn" in n for n in names) and any("cross_attn" in n for n in names)
    a, b, b2 = feats(3, 16, seed=1), feats(3, 16, seed=2), feats(3, 16, seed=3)
    assert not torch.allclose(m(a, b).before, m(a, b2).before, atol=1e-4)


def test_self_fusion_has_self_but_no_cross_attention():
    names = param_names(build(fusion="self"))
    assert any("self_attn" in n for n in names) and not any("cross_attn" in n for n in names)
    names = param_names(build(fusion="add"))
    assert not any("attn" in n for n in names)


def test_layer_weighting_switch():
    a, b = feats(3, 16, seed=1), feats(3, 16, seed=2)
    uniform = build(layer_weighting="uniform")
    assert not any("scorer" in n for n in param_names(uniform))
    assert torch.equal(uniform(a, b).layer_weights, torch.full((B, 3), 1 / 3))
    learned = build(layer_weighting="learned")
    with torch.no_grad():  # make the scorer decisive so the weights visibly depend on the pair
        learned.scorer.mlp[-1].weight.mul_(500)
    w = learned(a, b).layer_weights
    assert torch.allclose(w.sum(1), torch.ones(B)) and (w > 0).all()
    assert not torch.allclose(w[0], w[1], atol=1e-3)
    assert not torch.allclose(w, torch.full((B, 3), 1 / 3), atol=1e-3)
    assert build(num_layers=1).scorer is None  # one layer: nothing to weigh


def test_share_layers_and_mlp_switches_change_the_parameter_count():
    per_layer = sum(p.numel() for p in build(layer_weighting="uniform").parameters())
    shared = sum(p.numel() for p in build(layer_weighting="uniform", share_layers=True).parameters())
    assert per_layer == 3 * shared
    with_mlp = sum(p.numel() for p in build(layer_weighting="uniform", mlp_ratio=2.0).parameters())
    assert with_mlp - per_layer == 3 * (2 * C * 2 * C + 2 * C + C + 2 * C)  # fc1, fc2, LayerNorm, per layer


def test_dropout_only_acts_in_training():
    m = build(dropout=0.5)
    a, b = feats(3, 16, seed=1), feats(3, 16, seed=2)
    assert torch.equal(m(a, b).before, m(a, b).before)
    m.train()
    assert not torch.equal(m(a, b).before, m(a, b).before)


# --- numeric pin ------------------------------------------------------------------------------


def test_seeded_numeric_pin():
    """Fixed seed -> fixed output: catches accidental changes of the maths, init or parameter order."""
    m = build(num_layers=3, num_heads=4, mlp_ratio=2.0)
    out = m(feats(3, 16, seed=1), feats(3, 16, seed=2))
    got = [
        out.before.sum().item(),
        out.after.square().mean().item(),
        out.diff_maps.sum().item(),
        out.layer_weights[0, 0].item(),
        (out.before[:, :, :4] * torch.arange(1.0, 5.0)).sum().item(),
    ]
    expected = [3.7358329, 0.0810539, 391.54971, 0.3336832, -5.1596928]
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-4), got


def test_identity_init_returns_the_last_layer_at_first_and_learns_from_the_first_step():
    torch.manual_seed(0)
    module = MDP(dim=16, num_layers=3, num_heads=2, identity_init=True)
    before = [torch.randn(2, 9, 16) for _ in range(3)]
    after = [torch.randn(2, 9, 16) for _ in range(3)]
    out = module(before, after)
    assert torch.equal(out.before, before[-1]) and torch.equal(out.after, after[-1])
    assert out.diff_maps.shape == (2, 3, 9) and out.diff_maps.abs().sum() > 0  # heatmaps are still MDP's
    (out.before.square().sum() + out.after.sum()).backward()
    # At step 0 only the zero map's gradient is non-zero (the rest is scaled by it), and it is full-rank.
    assert torch.linalg.matrix_rank(module.zero_out.weight.grad) == 16
    torch.optim.Adam(module.parameters(), lr=1e-3).step()
    module.zero_grad()
    moved = module(before, after)
    assert not torch.equal(moved.before, before[-1])
    (moved.before.square().sum() + moved.after.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
