"""Each thing declared once: a DataModule's keys (its config dataclass, with the value checks), the optional
DataModule hooks (base class + the table in datamodules/contract.py), and one registry idiom for backbones,
DataModules and language models."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import datamodules.contract
from datamodules import build_datamodule, datamodule_class, list_datamodules, register_datamodule
from datamodules.base import PairDataConfig, PairDataModule
from datamodules.errors import ConfigError
from datamodules.omnidiff import OmniDiffConfig, OmniDiffDataModule
from experiments.common.config import CONF_DIR, REPO_ROOT, load_config
from lightning_modules.model import language_model

IMAGE = {"image_size": 8, "mean": (0.5,) * 3, "std": (0.5,) * 3, "seed": 0}
NOT_KEYS = {
    "self",
    "config",
    "image_size",
    "mean",
    "std",
    "pipeline",
    "seed",
    "kwargs",
}  # what a constructor may take


def config_keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


ALL_KEYS = set().union(*(config_keys(datamodule_class(n).config_class) for n in list_datamodules()))


# ------------------------------------------------------------------------------------------ one declaration
@pytest.mark.parametrize("name", list_datamodules())
def test_a_datamodule_constructor_takes_its_config_and_redeclares_no_key(name):
    cls = datamodule_class(name)
    assert issubclass(cls.config_class, PairDataConfig) and dataclasses.is_dataclass(cls.config_class)
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or not issubclass(klass, PairDataModule):
            continue
        params = inspect.signature(klass.__init__).parameters
        assert set(params) <= NOT_KEYS, f"{klass.__name__}.__init__ takes {sorted(set(params) - NOT_KEYS)}"
        assert not set(params) & ALL_KEYS
        assert list(params)[:2] == ["self", "config"]


@pytest.mark.parametrize("name", list_datamodules())
def test_every_key_has_its_one_default_in_the_dataclass(name):
    for f in dataclasses.fields(datamodule_class(name).config_class):
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name


def test_a_datamodule_refuses_anything_but_its_config_object():
    with pytest.raises(TypeError, match="takes a SyntheticConfig"):
        datamodule_class("synthetic")(PairDataConfig(), **IMAGE)


def test_omnidiff_takes_its_documented_defaults(tmp_path):
    # The constructor used to default subsets / category_map / categories to empty, unlike the config class.
    dm = OmniDiffDataModule(OmniDiffConfig(root=str(tmp_path)), **IMAGE)
    assert dm.subsets == {"real": "*real*", "render": "*render*"}
    assert dm.category_map["substitution"] == "replacement" and len(dm.categories) == 12
    assert load_config(groups={"data": "omnidiff"}).data.subsets == dm.subsets


BAD_VALUES = [
    ("synthetic", "data.max_changes=4", "data.max_changes must be 1, 2 or 3"),
    ("synthetic", "data.category_weights={nope: 1.0}", "data.category_weights: unknown categories"),
    ("clevr_change", "data.swap_prob=2", r"data.swap_prob must be in \[0, 1\]"),
    ("clevr_dc", "data.layout=flat", "data.layout must be one of"),
    ("clevr_dc", "data.block_size=0", "data.block_size must be positive"),
    ("pairs", "data.subset_by=source", "data.subset_by must be 'path' or 'field:<name>'"),
    ("omnidiff", "data.fields={image: a}", r"data.fields: unknown field\(s\) \['image'\]"),
    ("llava", "data.default_split=dev", "data.default_split must be one of"),
    ("iedit", "data.sample_per=record", "data.sample_per must be one of"),
    ("spot_the_diff", "data.on_error=ignore", "data.on_error must be one of"),
    ("mixture", "data.weights=[1.0]", "data.weights must be 4 non-negative numbers"),
    ("mixture", "data.members=[{name: clevr_change, swap_prob: 3}]", r"data.members\[0\] \(clevr_change\): "),
    ("mixture", "data.members=[{name: iedit}, {name: iedit}]", r"data.members\[1\]: .* listed twice"),
]


@pytest.mark.parametrize(("data", "override", "message"), BAD_VALUES)
def test_a_bad_value_fails_when_the_config_is_composed(data, override, message):
    """Before any DataModule or model is built: the dataclass's __post_init__ runs when the config is composed."""
    with pytest.raises(ConfigError, match=message):
        load_config(groups={"data": data}, overrides=[override])


# ------------------------------------------------------------------------------------------ hooks
def documented_hooks() -> list[str]:
    table = datamodules.contract.__doc__.split("**Optional hooks.**")[1]
    return re.findall(r"^``(\w+)(?:\(.*\))?``", table, flags=re.MULTILINE)


class Plain(PairDataModule):
    benchmark = "plain"

    def build_dataset(self, split):
        sample = {"before": 0, "after": 0, "categories": [], "benchmark": "plain"}
        return [{**sample, "pair_id": f"{split}{i}", "captions": ["a", "b"]} for i in range(3)]


def test_every_hook_is_on_the_base_class_with_a_neutral_default():
    hooks = documented_hooks()
    assert len(hooks) >= 15 and "hook" not in hooks
    assert all(hasattr(PairDataModule, h) or h in ("categories", "groups", "transform") for h in hooks)
    dm = Plain(PairDataConfig(categories=["x"]), **IMAGE)
    assert all(hasattr(dm, h) for h in hooks)
    assert (dm.categories, dm.groups, dict(dm.subsets), dm.benchmarks) == (["x"], {}, {}, ["plain"])
    assert (dm.sample_per, dm.baseline_names, dm.identifies_changes) == (None, (), False)
    assert dm.missing_split("val") is None and dm.has_split("val") and dm.specs("val") is None
    assert dm.epoch_parts() == {} and dm.baseline_predictions("val") == {}
    assert dm.change_identification("val", {"val0": "a"}) == {} == dm.category_confusion("val", {"val0": "a"})
    assert dm.reference_captions("train") == {f"train{i}": ["a", "b"] for i in range(3)}
    assert dm.training_captions(1) == ["a", "b"] * 2 + ["a"]  # <= limit * 5 references


def test_callers_call_the_hooks_plainly():
    probe = re.compile(r"\b(getattr|hasattr)\(\s*(dm|datamodule|module|member|trainer\.datamodule)\b")
    for folder in ("callbacks", "experiments", "datamodules"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            found = probe.search(path.read_text())
            assert found is None, f"{path.relative_to(REPO_ROOT)}: {found.group(0)} (a hook has a default)"


# ------------------------------------------------------------------------------------------ registries
def test_every_data_group_names_a_registered_datamodule():
    names = {load_config(groups={"data": p.stem}).data.name for p in (CONF_DIR / "data").glob("*.yaml")}
    assert names == set(list_datamodules())


def test_every_benchmark_module_is_imported_by_the_registry():
    from datamodules.registry import KIT_MODULES

    decorated = re.compile(r"^@register_datamodule\(", flags=re.MULTILINE)
    files = {p for p in (REPO_ROOT / "datamodules").rglob("*.py") if decorated.search(p.read_text())}
    listed = {REPO_ROOT / (m.replace(".", "/") + ".py") for m in KIT_MODULES}
    assert files == listed


@pytest.mark.slow
def test_importing_the_package_or_the_generator_needs_no_lightning():
    code = "import sys, datamodules, datamodules.synthetic.changes; print('lightning' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


def test_an_unknown_datamodule_name_suggests_the_nearest():
    with pytest.raises(ConfigError, match="unknown data.name 'clevr_chnge'; did you mean 'clevr_change'"):
        build_datamodule({"name": "clevr_chnge"}, **IMAGE)


def test_registering_checks_the_name():
    @dataclasses.dataclass
    class OtherConfig(PairDataConfig):
        name: str = "other"

    class Other(PairDataModule):
        config_class = OtherConfig

    with pytest.raises(ValueError, match="already registered"):
        register_datamodule("synthetic")(Other)
    with pytest.raises(ValueError, match="defaults to 'other', not 'another'"):
        register_datamodule("another")(Other)
    assert "another" not in list_datamodules()


def test_language_models_are_registered_and_other_names_are_pretrained():
    assert language_model.list_language_models() == ["tiny-gpt2", "tiny-qwen2"]
    assert language_model.is_tiny_lm("tiny-qwen2") and not language_model.is_tiny_lm("Qwen/Qwen2-0.5B")
    source = Path(language_model.__file__).read_text()
    assert 'if name == "tiny' not in source  # one lookup, in the registry
    sizes = dict(num_layers=1, hidden_size=8, num_heads=2, vocab_size=16, max_positions=8)
    lm = language_model.build_language_model(
        name="tiny-gpt2", **sizes, pad_token_id=0, bos_token_id=1, eos_token_id=1
    )
    assert lm.config.n_layer == 1 and lm.config.vocab_size == 16
    with pytest.raises(FileNotFoundError, match="Did you mean 'tiny-gpt2'"):
        language_model.build_language_model(
            name="tiny-gtp2", **sizes, pad_token_id=0, bos_token_id=1, eos_token_id=1
        )
