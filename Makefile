# M3Diff kit — every command a user needs. `make help` lists them.
#
# Variables (BACKBONE, DATA, EXP, CKPT, MODEL, ARGS, ...) reach the Python entry points as environment
# variables read with "$$VAR" inside double quotes, and their raw text is taken with $(value ...):
# neither make nor the shell ever evaluates what a user typed, so `ARGS='x; rm -rf ~'` is only
# an (invalid) override, never a command.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest processes for make test / test-fast (pytest-xdist; a test file stays on one process, so its module-scoped
# set-up is built once). Two: the 2-core machine the suite's time is measured on (docs/development.md).
TEST_WORKERS ?= 2
# Each stamp is keyed on everything that decides its install: change one of these files and the
# next `make` reinstalls; otherwise it is a no-op. `make setup` installs what the kit runs on; the dev
# tools (pytest, ruff) come with the targets that use them.
SETUP_FILES := requirements.txt requirements.lock pyproject.toml
DEV_FILES := requirements-dev.txt requirements.lock
STAMP := $(VENV)/.setup-$(shell cat $(SETUP_FILES) 2>/dev/null | sha256sum | cut -c1-16)
DEV_STAMP := $(VENV)/.devsetup-$(shell cat $(DEV_FILES) 2>/dev/null | sha256sum | cut -c1-16)
# -qq: pip prints errors only (its own message when an install fails), none of its progress or warnings.
PIP_INSTALL := $(PY) -m pip install -qq --disable-pip-version-check

# User-facing variables, copied verbatim (no expansion) into M3_* and exported; the originals
# are unexported so make never expands them on the way into a recipe's environment.
USER_VARS := BACKBONE BACKBONES DATA EXP CKPT MODEL MODELS PREDS ARGS OUT N SPLIT GT PRED CATEGORIES ROOT JSON RESUME BEFORE AFTER PORT FORCE
$(foreach v,$(USER_VARS),$(eval export M3_$(v) := $$(value $(v))))
unexport $(USER_VARS)

# Offline unless told otherwise (`make train HF_HUB_OFFLINE=0 ...` allows downloads): a run never waits on the
# network, and weights that are not on disk fail at once with a message saying where to put them.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= $(HF_HUB_OFFLINE)
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help setup setup-dev test test-fast lint format train pretrain eval score caption export data-info synth compare tb bench gpu-check real-width clean clean-logs

help: ## list the commands
	@echo "M3Diff kit — make targets (variables in CAPS):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "Runs offline (HF_HUB_OFFLINE=1, nothing is downloaded); allow downloads with e.g. make train HF_HUB_OFFLINE=0 ..."

setup: $(STAMP) ## create .venv: the pinned dependencies and the `mdp` library (idempotent)

# The kit (lightning_modules/, datamodules/, ... , experiments/, conf/) runs from this checkout and is
# never installed; of this repository only `mdp` is (editable), as the m3diff-mdp distribution.
# A kit installed by an older Makefile as "m3diff-kit" is removed: it put those folders into
# site-packages under their generic names. The import check runs isolated (-I: neither the current
# folder nor PYTHONPATH on sys.path), so it sees what is installed, not this checkout.
$(STAMP): $(SETUP_FILES)
	@command -v java >/dev/null 2>&1 || echo "WARNING: java not found: the COCO caption metrics (PTB tokenizer, METEOR) need Java 8+ (e.g. apt install openjdk-17-jre-headless). Training runs; scoring will report what it cannot compute."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt -c requirements.lock
	$(PY) -m pip uninstall -qq -y m3diff-kit
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	$(PY) -I -c "import torch, lightning, timm, open_clip, transformers, pycocoevalcap, omegaconf, mdp"
	@rm -f $(VENV)/.setup-[0-9a-f]*
	@touch $@
	@echo "setup complete: $(VENV)"

setup-dev: $(DEV_STAMP) ## setup + the development tools (pytest, ruff)

$(DEV_STAMP): $(STAMP) $(DEV_FILES)
	$(PIP_INSTALL) -r requirements-dev.txt -c requirements.lock
	@rm -f $(VENV)/.devsetup-*
	@touch $@

test: setup-dev ## run the whole test suite (lint + pytest, slow tests included)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile

test-fast: setup-dev ## run the fast tests only
	$(PY) -m pytest tests -m "not slow" -n $(TEST_WORKERS) --dist loadfile

lint: setup-dev ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup-dev ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

train: setup ## train (BACKBONE=siglip|clip|<timm name>, DATA=synthetic|..., ROOT=<data dir>, EXP=, RESUME=last, ARGS="k=v ...")
	$(PY) -m experiments.train --backbone "$$M3_BACKBONE" --data "$$M3_DATA" --root "$$M3_ROOT" --exp "$$M3_EXP" --resume "$$M3_RESUME" --args "$$M3_ARGS"

eval: setup ## evaluate CKPT (or MODEL=<HF model folder or cached hub id>, zero-shot) on DATA's SPLIT (default test) [ROOT=<data dir>], writing COCO files and metrics
	$(PY) -m experiments.evaluate --ckpt "$$M3_CKPT" --model "$$M3_MODEL" --data "$$M3_DATA" --root "$$M3_ROOT" --split "$$M3_SPLIT" --out "$$M3_OUT" --args "$$M3_ARGS"

score: setup ## score GT=<coco gt.json> PRED=<pred.json> [OUT=metrics.json] [CATEGORIES=map.json]
	$(PY) -m experiments.score --gt "$$M3_GT" --pred "$$M3_PRED" --out "$$M3_OUT" --categories "$$M3_CATEGORIES"

caption: setup ## caption one pair: CKPT=<ckpt> (or MODEL=<HF model folder or cached hub id>) BEFORE=<png> AFTER=<png> [OUT=<new dir>] [FORCE=1: replace an earlier caption OUT]
	$(PY) -m experiments.caption --ckpt "$$M3_CKPT" --model "$$M3_MODEL" --before "$$M3_BEFORE" --after "$$M3_AFTER" --out "$$M3_OUT" --force "$$M3_FORCE" --args "$$M3_ARGS"

export: setup ## write CKPT's trained weights to a new OUT for use without the kit (FORCE=1: replace an earlier export there)
	$(PY) -m experiments.export --ckpt "$$M3_CKPT" --out "$$M3_OUT" --force "$$M3_FORCE"

# make exits 2 whenever a recipe fails, so data-info's own status (1 = problems listed, 2 = unreadable) is the
# "Error 1" / "Error 2" of make's last line; `.venv/bin/python -m experiments.data_info ...` returns it as is.
data-info: setup ## inspect a dataset: DATA=<benchmark> ROOT=<dir> [SPLIT=test] [JSON=1] (status: make's last line)
	$(PY) -m experiments.data_info --data "$$M3_DATA" --root "$$M3_ROOT" --split "$$M3_SPLIT" --json "$$M3_JSON" --args "$$M3_ARGS"

pretrain: setup ## pretrain the default tiny SigLIP on the embedded scenes (SigLIP loss) [ARGS="max_steps=.. out=.."]
	$(PY) -m experiments.pretrain --args "$$M3_ARGS"

synth: setup ## export the embedded benchmark: OUT=<new dir> N=<count> [SPLIT=train|val|test] [FORCE=1: replace an earlier export]
	$(PY) -m experiments.synth --out "$$M3_OUT" --n "$$M3_N" --split "$$M3_SPLIT" --force "$$M3_FORCE" --args "$$M3_ARGS"

compare: setup ## train BACKBONES="siglip clip ..." x EXP="a b" on one budget, + zero-shot MODELS="<folder> ..." + PREDS="name=<pred.json> ..." [SPLIT=val|test]; one table in logs/<exp>/compare.md
	$(PY) -m experiments.compare --backbones "$$M3_BACKBONES" --exp "$$M3_EXP" --models "$$M3_MODELS" --preds "$$M3_PREDS" --split "$$M3_SPLIT" --data "$$M3_DATA" --root "$$M3_ROOT" --args "$$M3_ARGS"

tb: setup ## TensorBoard on 127.0.0.1 over logs/ [PORT=6006]
	$(VENV)/bin/tensorboard --logdir logs --host 127.0.0.1 --port "$${M3_PORT:-6006}"

bench: setup ## speed benchmarks: prints a table, writes bench_results/bench.json
	$(PY) -m experiments.bench --out "$$M3_OUT" --args "$$M3_ARGS"

gpu-check: setup ## the paper-scale model at real size (random weights) on one GPU: step time, pairs/s, MFU, memory, checkpoint size [ARGS="--toy"]
	$(PY) -m experiments.gpu_check --out "$$M3_OUT" --args "$$M3_ARGS"

real-width: setup ## the paper experiment at LLaVA-OneVision-0.5B's widths on this CPU (~35 min, up to ~17 GiB RAM): 2 steps, resume, caption; memory, step time, checkpoint size [OUT=<dir>] [ARGS="--toy"]
	$(PY) -m experiments.real_width --out "$$M3_OUT" --args "$$M3_ARGS"

clean: ## remove caches and build files (keeps logs/ and .venv)
	rm -rf .pytest_cache .ruff_cache bench_results build dist *.egg-info

clean-logs: ## remove every run under logs/: TensorBoard files, checkpoints, evaluations
	rm -rf logs lightning_logs
