"""Every YAML in conf/ and experiments/ composes and builds its model and data on CPU at tiny sizes; bad keys,
types and names fail with messages that say what to write instead (also through the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from support.data import BUILDERS, build_mini
from support.tiny import TINY_MODEL

from experiments.common import assembly, trainer
from experiments.common.config import CONF_DIR, EXPERIMENTS_DIR, REPO_ROOT, ConfigError, load_config
from lightning_modules.captioner import CaptionerModule
from lightning_modules.model.language_model import is_tiny_lm

GROUP_FILES = sorted((p.parent.name, p.stem) for p in CONF_DIR.glob("*/*.yaml"))
EXPERIMENTS = sorted(
    str(p.relative_to(EXPERIMENTS_DIR).with_suffix("")) for p in EXPERIMENTS_DIR.rglob("*.yaml")
)
ABLATIONS = ("mdp_off", "single_scale", "no_gate", "subtract", "no_cross_attention")
# The ~400M-parameter encoder takes seconds to initialise: its settings are checked without building it.
HEAVY = {("backbone", "siglip_so400m")}

# Tiny sizes for any config: the tiny model's keys every config has (each backbone keeps its own image size), and
# the data keys.
TINY = [
    "backbone.pretrained=null",
    *(o for o in TINY_MODEL if not o.startswith("backbone.image_size")),
    "model.lm.tokenizer_captions=40",
    "model.max_caption_tokens=16",
    "generation.max_new_tokens=4",
    "data.batch_size=2",
    "data.eval_batch_size=2",
    "data.num_workers=0",
]


def tiny(cfg: DictConfig, tmp_path: Path, *, lm: str | None = None) -> list[str]:
    """Overrides that make ``cfg`` build fast on CPU: tiny sizes, random init, mini datasets for real benchmarks."""
    name = str(cfg.backbone.name)
    size = 28 if "-14" in name or "patch14" in name else 32  # two patches per side
    out = [*TINY, f"backbone.image_size={size}"]
    if lm:
        out.append(f"model.lm.name={lm}")
    if cfg.data.name == "synthetic":
        out += ["data.train_size=16", "data.val_size=4", "data.test_size=4"]
    elif cfg.data.name == "mixture":
        members = []
        for member in cfg.data.members:
            mini = build_mini(member.name, tmp_path / member.name)
            members.append({"name": str(member.name), "root": str(mini.root), **mini.overrides})
        out.append(f"data.members={json.dumps(members)}")
    elif cfg.data.name in BUILDERS:
        mini = build_mini(str(cfg.data.name), tmp_path / str(cfg.data.name))
        out += [f"data.root={mini.root}", *(f"data.{k}={v}" for k, v in mini.overrides.items())]
    return out


def build_and_step(cfg: DictConfig, *, backward: bool = True) -> CaptionerModule:
    """Build data + model and run one validation batch through the loss. With ``backward``, every trainable
    parameter must get a gradient (DDP without find_unused_parameters needs that)."""
    torch.manual_seed(0)
    parts = assembly.assemble(cfg)
    datamodule, module = parts.datamodule, parts.module
    datamodule.setup("fit")
    loaders = datamodule.val_dataloader()
    batch = next(iter(loaders[0] if isinstance(loaders, list) else loaders))
    loss, _, _ = module.shared_step(batch, [refs[0] for refs in batch["captions"]])
    assert torch.isfinite(loss)
    if backward:
        loss.backward()
        unused = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, f"parameters without gradient (DDP would fail): {unused[:5]}"
    return module


def compose(
    tmp_path: Path, *, lm: str | None = None, overrides: tuple[str, ...] = (), **kwargs
) -> DictConfig:
    """``load_config(**kwargs)`` at tiny sizes; ``overrides`` come last."""
    cfg = load_config(**kwargs)
    return load_config(**kwargs, overrides=[*tiny(cfg, tmp_path, lm=lm), *overrides])


# --------------------------------------------------------------------------------------------- every file
@pytest.mark.parametrize(("group", "name"), [g for g in GROUP_FILES if g not in HEAVY and g[0] != "trainer"])
def test_group_file_composes_and_builds(group, name, tmp_path, llava_twin):
    cfg = load_config(groups={group: name})
    assert cfg.defaults[group] == name
    lm = None
    if cfg.model.init_from:
        # A LLaVA-OneVision folder: without it, building says where it looked; with a tiny twin, it builds.
        with pytest.raises(ConfigError, match=str(cfg.model.init_from)):
            assembly.assemble(compose(tmp_path, groups={group: name}))
        twin = [f"model.init_from={llava_twin}", "backbone.layers=[1,3,5]", "mdp.num_heads=2"]
        build_and_step(compose(tmp_path, groups={group: name}, overrides=twin))
        return
    if not is_tiny_lm(cfg.model.lm.name):
        # A pretrained LM is a local folder: without it, building says where it looked and what to do.
        with pytest.raises(FileNotFoundError, match="model.lm.name"):
            assembly.assemble(compose(tmp_path, groups={group: name}))
        lm = "tiny-qwen2"
    # The gradient check belongs to model structure (model group, experiments); data and backbone files
    # only need to build and run.
    module = build_and_step(compose(tmp_path, groups={group: name}, lm=lm), backward=group == "model")
    if name.endswith("_b16"):  # real-size ViT-B (random init, at a reduced image size)
        assert module.model.backbone.width == 768 and module.model.backbone.layers == (5, 7, 9, 11)


@pytest.mark.parametrize("name", [n for g, n in GROUP_FILES if g == "trainer"])
def test_trainer_files_are_lightning_arguments(name):
    import inspect

    import lightning as L

    cfg = load_config(groups={"trainer": name})
    allowed = set(inspect.signature(L.Trainer.__init__).parameters)
    assert set(cfg.trainer) <= allowed
    if cfg.trainer.accelerator == "cpu":
        trainer.make_trainer(cfg, logger=False, callbacks=[])


def test_real_size_backbones_have_their_paper_settings():
    so400m = load_config(groups={"backbone": "siglip_so400m"}).backbone
    assert (so400m.name, list(so400m.layers), so400m.image_size, so400m.pretrained) == (
        "siglip-so400m-14-384",
        [16, 19, 22, 25],
        384,
        "webli",
    )
    for name, pretrained in (("siglip_b16", "webli"), ("clip_b16", "openai")):
        bb = load_config(groups={"backbone": name}).backbone
        assert bb.pretrained == pretrained and bb.image_size == 224 and list(bb.layers)[-1] == 11


def test_pretrained_tag_without_weights_says_where_to_put_them(tmp_path):
    import mdp

    cfg = load_config(groups={"backbone": "clip_b16"})
    overrides = [o for o in tiny(cfg, tmp_path) if o != "backbone.pretrained=null"]
    with pytest.raises(mdp.BackboneWeightsError, match="openai"):
        assembly.assemble(load_config(groups={"backbone": "clip_b16"}, overrides=overrides))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_builds(name, tmp_path):
    if name.startswith("paper/"):
        pytest.skip("built in test_paper_config_builds_from_a_tiny_llava_onevision_twin")
    cfg = load_config(experiment=name)
    lm = None if is_tiny_lm(cfg.model.lm.name) else "tiny-qwen2"
    module = build_and_step(compose(tmp_path, experiment=name, lm=lm))
    model = module.model
    stem = Path(name).name
    if stem == "mdp_off":
        assert model.mdp is None
    elif stem in ABLATIONS:
        c = model.mdp.config
        assert (c.gate, c.difference, c.fusion, c.num_layers) == (
            stem != "no_gate",
            "subtract" if stem == "subtract" else "concat",
            "self" if stem == "no_cross_attention" else "attention",
            1 if stem == "single_scale" else 3,
        )
        assert model.backbone.layers == ((5,) if stem == "single_scale" else (1, 3, 5))


def test_ablations_are_all_there_and_each_has_its_own_run_folder():
    names = {load_config(experiment=f"ablations/{a}").experiment for a in ABLATIONS}
    assert names == set(ABLATIONS)
    assert load_config(experiment="default") == load_config()


@pytest.mark.slow
def test_paper_config_builds_from_a_tiny_llava_onevision_twin(tmp_path, llava_twin):
    name = "paper/m3diff_so400m_qwen2"
    cfg = load_config(experiment=name)
    # The paper's recipe, as composed.
    assert cfg.model.init_from == "models/llava-onevision-qwen2-7b-ov-hf" and cfg.model.init_weights
    assert list(cfg.backbone.layers) == [16, 19, 22, 25] and not cfg.backbone.freeze and cfg.mdp.enabled
    assert cfg.mdp.identity_init is None and cfg.model.token_pool == 1  # identity: on with init_from
    assert (cfg.model.lora.enabled, cfg.model.lora.r, cfg.model.lora.alpha) == (True, 128, None)  # alpha = 2r
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.strategy == "ddp"
    assert (
        cfg.backbone.grad_checkpointing
        and cfg.model.lm.grad_checkpointing
        and cfg.model.lm.dtype == "bfloat16"
    )
    global_batch = (
        cfg.data.batch_size
        * cfg.trainer.devices
        * cfg.trainer.num_nodes
        * cfg.trainer.accumulate_grad_batches
    )
    assert global_batch == 256 and cfg.data.batch_size == 2  # 40 GB A100s: docs/paper_scale.md
    assert [m.name for m in cfg.data.members] == [  # the paper's six, every caption one sample
        "omnidiff",
        "spot_the_diff",
        "iedit",
        "birds_to_words",
        "clevr_change",
        "clevr_dc",
    ]
    assert cfg.data.sample_per == "caption" and cfg.data.weights is None
    with pytest.raises(ConfigError, match="llava-onevision-qwen2-7b-ov-hf"):
        assembly.assemble(compose(tmp_path, experiment=name))
    # The same recipe on the tiny twin (6 tower layers: taps 1/3/5, the last = its projector's input).
    twin = [f"model.init_from={llava_twin}", "backbone.layers=[1,3,5]", "mdp.num_heads=2", "model.lora.r=4"]
    module = build_and_step(compose(tmp_path, experiment=name, overrides=twin))
    model = module.model
    assert module.config["backbone"]["name"] == f"hf:{llava_twin}" and len(model.backbone.layers) == 3
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"backbone", "mdp", "projector", "image_newline", "lm"}  # lm: the LoRA adapters only
    lm_trainable = [n for n, p in model.lm.named_parameters() if p.requires_grad]
    assert lm_trainable and all("lora_" in n for n in lm_trainable)
    assert all(m.training for m in model.modules())  # from_pretrained's eval mode would disable LoRA dropout
    frozen = {p.dtype for p in model.lm.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16} and {p.dtype for p in model.parameters() if p.requires_grad} == {
        torch.float32
    }


def test_lora_alpha_follows_a_changed_r_unless_set():
    def resolved(*overrides: str) -> DictConfig:
        return assembly.resolve_static(load_config(groups={"model": "qwen2_lora"}, overrides=list(overrides)))

    assert resolved().model.lora.alpha == 256  # the paper's r=128 / alpha=256
    assert resolved("model.lora.r=8").model.lora.alpha == 16  # the same scale alpha / r = 2
    assert resolved("model.lora.r=8", "model.lora.alpha=8").model.lora.alpha == 8


def test_fsdp_shards_per_transformer_block():
    from lightning.pytorch.strategies import FSDPStrategy

    strategy = trainer.make_strategy("fsdp")
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    module = build_tiny_module()
    wrapped = {
        type(m).__name__ for m in module.modules() if policy(module=m, recurse=False, nonwrapped_numel=0)
    }
    assert wrapped == {"GPT2Block", "Block"}  # the LM's decoder layers and the (timm) ViT blocks
    assert strategy.kwargs["use_orig_params"]  # frozen and trained parameters in one unit (LoRA)
    with pytest.raises(ConfigError, match="model.lm.dtype=float32"):
        trainer.make_trainer(
            load_config(overrides=["trainer.strategy=fsdp", "model.lm.dtype=bfloat16"]),
            logger=False,
            callbacks=[],
        )
    assert trainer.make_strategy("ddp") == "ddp"


def test_the_data_is_prepared_with_the_backbones_own_preprocessing():
    """Backbone -> its ImageSpec -> the DataModule's transform: CLIP's mean/std, not a guess patched later."""
    tiny_data = ["data.val_size=4", "data.train_size=16"]
    cfg = load_config(groups={"backbone": "clip"}, overrides=[*TINY, "backbone.image_size=32", *tiny_data])
    parts = assembly.assemble(cfg)
    datamodule, module = parts.datamodule, parts.module
    spec, transform = module.image_spec, datamodule.transform
    assert spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert (transform.size, transform.mean, transform.std) == (
        spec.size,
        spec.mean,
        spec.std,
    ) and spec.size == 32


def build_tiny_module():
    cfg = load_config(overrides=[*TINY, "backbone.image_size=32", "data.val_size=4", "data.train_size=16"])
    return assembly.assemble(cfg).module


# --------------------------------------------------------------------------------------------- bad input
def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lr_lmm'; did you mean 'optim.lr_lm'\?"):
        load_config(overrides=["optim.lr_lmm=1"])
    with pytest.raises(ConfigError, match="did you mean 'backbone.layers'"):
        load_config(overrides=["backbone.layer=[1]"])
    with pytest.raises(ConfigError, match="did you mean 'trainer.max_steps'"):
        load_config(overrides=["trainer.max_step=10"])


def test_unknown_key_in_an_experiment_file_names_the_file(tmp_path):
    exp = tmp_path / "typo.yaml"
    exp.write_text("mdp:\n  gated: false\n")
    with pytest.raises(
        ConfigError, match=r"typo\.yaml: unknown config key 'mdp.gated'; did you mean 'mdp.gate'"
    ):
        load_config(experiment=exp)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=abc", "'trainer.max_steps' expects int"),
        ("mdp.gate=3", "'mdp.gate' expects bool"),
        ("backbone.layers=5", "'backbone.layers' expects list"),
        ("optim.lr_lm=[1]", "'optim.lr_lm' expects float"),
        ("seed=1.5", "'seed' expects int"),
    ],
)
def test_wrong_type_fails(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_unknown_group_choice_and_experiment_list_the_options():
    with pytest.raises(ConfigError, match=r"no data config 'synthtic'.*synthetic"):
        load_config(groups={"data": "synthtic"})
    with pytest.raises(ConfigError, match="did you mean 'ablations/no_gate'"):
        load_config(experiment="ablations/no_gat")


@pytest.mark.slow
def test_cli_prints_config_errors_without_a_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--args", "optim.lr_lmm=1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown config key 'optim.lr_lmm'; did you mean 'optim.lr_lm'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_print_config_shows_the_composed_config(capsys):
    from experiments import compare, train

    assert train.main(["--exp", "ablations/no_gate", "--backbone", "clip", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "experiment: no_gate" in out and "name: clip-tiny" in out and "gate: false" in out
    assert compare.main(["--backbones", "siglip clip", "--exp", "ablations/subtract", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert out.count("difference: subtract") == 2 and "name: siglip-tiny" in out and "name: clip-tiny" in out
