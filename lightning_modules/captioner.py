"""The thin LightningModule around :class:`~lightning_modules.model.m3diff.M3Diff`.

Built from config values only (``config``: the resolved run config as plain dicts; ``tokenizer_json``: the
trained caption tokenizer, for tiny LMs), so ``CaptionerModule.load_from_checkpoint(path)`` rebuilds it
with no extra arguments. One shared step computes the teacher-forced loss; validation and test also
generate captions and return them for the metrics callback (``callbacks/caption_metrics.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import Perplexity

import mdp
from lightning_modules.model import base_model
from lightning_modules.model.build import build_model
from lightning_modules.model.language_model import is_tiny_lm
from lightning_modules.model.m3diff import heatmaps
from lightning_modules.model.prompt import InstructionPrompts, Segments, prompt_for
from lightning_modules.model.tokenizer import load_pretrained_tokenizer, tokenizer_from_json
from lightning_modules.pair_metrics import PairCount, PairLoss, evaluation_record
from lightning_modules.schedules import warmup_cosine


class CaptionerModule(L.LightningModule):
    """Args:
    config: the resolved run config (``experiments/common/assembly.py``; ``backbone``, ``mdp``, ``model``,
        ``optim``, ``generation`` sections are read). With ``model.init_from`` its ``model.lm.name`` is that
        folder, whose tokenizer is the LM's.
    tokenizer_json: the caption tokenizer of a tiny LM (``None`` for a pretrained LM, which brings its own).
    backbone: the backbone the run assembly already built from ``config`` (to prepare the data with its ``spec``);
        ``None`` builds it from ``config`` (``load_from_checkpoint``). Not a hyper-parameter.
    """

    def __init__(
        self,
        *,
        config: dict[str, Any],
        tokenizer_json: str | None = None,
        backbone: mdp.Backbone | None = None,
    ) -> None:
        super().__init__()
        # logger=False: the tokenizer JSON belongs in the checkpoint, not in TensorBoard's hparams.
        self.save_hyperparameters(ignore=["backbone"], logger=False)
        self.config = config
        model_cfg, lm_cfg = config["model"], config["model"]["lm"]
        if is_tiny_lm(lm_cfg["name"]):
            if tokenizer_json is None:
                raise ValueError("a tiny LM needs tokenizer_json (train it on the training captions)")
            self.tokenizer = tokenizer_from_json(tokenizer_json)
        else:
            self.tokenizer = load_pretrained_tokenizer(lm_cfg["name"])
        self.model = build_model(config, self.tokenizer, backbone=backbone)
        # A sample's own instruction (``batch["instruction"]``) is its user turn's text with a chat template.
        self.instruction_prompts = InstructionPrompts(
            prompt_for(config, self.tokenizer), default=model_cfg["prompt"]
        )
        vocab = self.model.lm.get_input_embeddings().num_embeddings
        self.train_accuracy = MulticlassAccuracy(num_classes=vocab, ignore_index=-100, average="micro")
        self.train_perplexity = Perplexity(ignore_index=-100)
        self.eval_loss = torch.nn.ModuleDict({"val": PairLoss(), "test": PairLoss()})
        # Generated captions that ran into generation.max_new_tokens (logged as <stage>/cut_captions).
        self.cut_captions = torch.nn.ModuleDict({"val": PairCount(), "test": PairCount()})
        # None: no cut (a resolved config has both limits: experiments/common/assembly.py).
        self.max_caption_tokens = model_cfg["max_caption_tokens"]
        # Frozen tensors read from pretrained folders are left out of checkpoints (see on_save_checkpoint).
        self.base_sources = base_model.base_sources(config)
        self.base_fingerprints = base_model.describe(self.base_sources) if self.frozen_base_keys() else {}

    # ----------------------------------------------------------------------------------------- helpers
    @property
    def image_spec(self) -> mdp.ImageSpec:
        return self.model.backbone.spec

    def tokenize(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> right-padded ``(B, T)`` ids ending in the caption's end token (EOS, or the chat template's
        end of turn), and the attention mask."""
        encoded = self.tokenizer(
            [c.strip() for c in captions],
            add_special_tokens=False,
            truncation=self.max_caption_tokens is not None,
            max_length=None if self.max_caption_tokens is None else self.max_caption_tokens - 1,
        )["input_ids"]
        eos, pad = self.model.eos_token_id, self.tokenizer.pad_token_id
        rows = [ids + [eos] for ids in encoded]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    def pick_references(self, batch: dict, *, step: int) -> list[str]:
        """One reference per pair, chosen by (seed, step, pair id): a resumed run picks the same ones."""
        seed = self.config.get("seed", 0)
        return [
            refs[zlib.crc32(f"{seed}:{step}:{pid}".encode()) % len(refs)]
            for pid, refs in zip(batch["pair_id"], batch["captions"])
        ]

    def prompts(self, instructions: Sequence[str | None] | None) -> list[Segments] | None:
        """Each pair's text segments from its instruction (``None`` falls back to ``model.prompt``); ``None``
        when the model's own segments serve the whole batch (always so without a chat template)."""
        return self.instruction_prompts.segments(instructions)

    def decode(self, sequences: list[list[int]]) -> list[str]:
        return [text.strip() for text in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    # ----------------------------------------------------------------------------------------- steps
    def shared_step(
        self, batch: dict, captions: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(captions)
        prompts = self.prompts(batch.get("instruction"))
        loss, logits = self.model(batch["before"], batch["after"], ids, mask, prompts=prompts)
        return loss, logits, ids.masked_fill(mask == 0, -100)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, logits, labels = self.shared_step(batch, self.pick_references(batch, step=self.global_step))
        self.train_accuracy(logits.detach().flatten(0, 1), labels.flatten())
        self.train_perplexity(logits.detach().float(), labels)
        size = len(batch["pair_id"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/token_acc", self.train_accuracy, batch_size=size)
        self.log("train/perplexity", self.train_perplexity, batch_size=size)
        return loss

    def evaluation_step(self, batch: dict, stage: str) -> dict[str, list]:
        _, logits, labels = self.shared_step(batch, [refs[0] for refs in batch["captions"]])
        token_losses = F.cross_entropy(
            logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none"
        )
        keys = [f"{b}/{p}" for b, p in zip(batch["benchmark"], batch["pair_id"])]
        self.eval_loss[stage].update(keys, token_losses.sum(1), (labels != -100).sum(1))
        generation = self.config["generation"]
        sequences, _ = self.model.generate(
            batch["before"], batch["after"], prompts=self.prompts(batch.get("instruction")), **generation
        )
        # A caption that used the whole generation budget without its end token was cut mid-way.
        cut = torch.tensor([len(s) >= generation["max_new_tokens"] for s in sequences], device=self.device)
        self.cut_captions[stage].update(keys, cut, torch.ones_like(cut))
        predictions = self.decode(sequences)
        return evaluation_record(batch, predictions)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, list]:
        return self.evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, list]:
        return self.evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_eval_loss("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_loss("test")

    def _log_eval_loss(self, stage: str) -> None:
        for name, metric in (("loss", self.eval_loss[stage]), ("cut_captions", self.cut_captions[stage])):
            if metric.update_count:
                # Every rank holds the same gathered value; "max" keeps it bit-exact (a mean could round).
                self.log(f"{stage}/{name}", metric.compute(), sync_dist=True, reduce_fx="max")
            metric.reset()

    # ----------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def caption(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        *,
        instructions: Sequence[str | None] | None = None,
        **overrides: Any,
    ) -> list[str]:
        """Captions for a batch of pairs ``(B, 3, H, W)`` x 2, with the configured decoding (and each pair's
        instruction, if given: :meth:`prompts`)."""
        generation = {**self.config["generation"], **overrides}
        sequences, _ = self.model.generate(before, after, prompts=self.prompts(instructions), **generation)
        return self.decode(sequences)

    @torch.no_grad()
    def explain(self, batch: dict) -> dict[str, Any]:
        """Captions and difference heatmaps ``(B, h, w)`` in [0, 1] for the panels callback."""
        prompts = self.prompts(batch.get("instruction"))
        sequences, visual = self.model.generate(
            batch["before"], batch["after"], prompts=prompts, **self.config["generation"]
        )
        return {"captions": self.decode(sequences), "heatmaps": heatmaps(visual)}

    # ----------------------------------------------------------------------------------------- checkpoints
    def frozen_base_keys(self) -> list[str]:
        """State-dict names of the frozen parameters that come from a pretrained folder (the LM under LoRA)."""
        prefixes = tuple(self.base_sources)
        if not prefixes:
            return []
        return [
            name
            for name, p in self.named_parameters(remove_duplicate=False)
            if not p.requires_grad and name.startswith(prefixes)
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Adapter-only checkpoints: drop the frozen base tensors, record which folders they come from."""
        keys = self.frozen_base_keys()
        if not keys:
            return
        state = checkpoint["state_dict"]
        for key in keys:
            state.pop(key, None)
        checkpoint["base_model"] = self.base_fingerprints

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the frozen base tensors (this module was just built from the same folders) back into an
        adapter-only checkpoint, after checking that the folders are the ones it was trained on."""
        saved = checkpoint.get("base_model")
        if not saved:
            return
        for source, entry in saved.items():
            current = self.base_fingerprints.get(source, {}).get("fingerprint")
            if current and not current.startswith(
                entry["fingerprint"].split(":")[0] + ":"
            ):  # an older scheme
                current = base_model.fingerprint_as(base_model.resolve_source(source), entry["fingerprint"])
            if current != entry["fingerprint"]:
                raise base_model.BaseModelMismatchError(
                    f"the checkpoint was trained on base model {source} with fingerprint {entry['fingerprint']}, "
                    f"but this model was built from {current or 'another base'}"
                )
        state, own = checkpoint["state_dict"], self.state_dict()
        for key in self.frozen_base_keys():
            state.setdefault(key, own[key])

    # ----------------------------------------------------------------------------------------- optim
    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.config["optim"]
        groups = {"backbone": [], "mdp": [], "lm": []}
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            key = "backbone" if name.startswith("backbone.") else "lm" if name.startswith("lm.") else "mdp"
            groups[key].append(param)
        lrs = {"backbone": optim["lr_backbone"], "mdp": optim["lr_mdp"], "lm": optim["lr_lm"]}
        param_groups = [{"params": p, "lr": lrs[k], "name": k} for k, p in groups.items() if p]
        on_fused_devices = all(p.device.type in ("cpu", "cuda") for ps in groups.values() for p in ps)
        implementation = adamw_implementation(
            str(self.trainer.precision), self.trainer.gradient_clip_val, fused_supported=on_fused_devices
        )
        optimizer = torch.optim.AdamW(
            param_groups,
            weight_decay=optim["weight_decay"],
            betas=tuple(optim["betas"]),
            **{implementation: True},
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = warmup_cosine(
            optimizer,
            warmup_steps=min(optim["warmup_steps"], total // 2),
            total_steps=total,
            min_lr_ratio=optim["min_lr_ratio"],
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Norm clipping under FSDP by FSDP's own ``clip_grad_norm_`` (the norm over every shard): Lightning's FSDP
        precision plugin refuses ``gradient_clip_algorithm="norm"`` (a per-rank norm would be wrong). Elsewhere
        Lightning's clipping, after its unscaling of fp16 gradients."""
        from lightning.pytorch.strategies import FSDPStrategy

        fsdp = isinstance(self.trainer.strategy, FSDPStrategy)
        if fsdp and gradient_clip_val and (gradient_clip_algorithm or "norm") == "norm":
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


# Lightning's mixed-precision plugins (16-mixed, bf16-mixed; FSDP's alike) clip after unscaling the gradients
# themselves, and refuse to clip for an optimizer that unscales inside its own step (``_step_supports_amp_scaling``:
# torch's fused AdamW): "does not allow for gradient clipping because it performs unscaling of gradients internally".
MIXED_PRECISION = ("16-mixed", "bf16-mixed")


def adamw_implementation(
    precision: str, gradient_clip_val: float | None, *, fused_supported: bool = True
) -> str:
    """``"fused"`` or ``"foreach"``: torch's fused AdamW (one kernel per parameter instead of ~10 elementwise ops:
    8.5 vs 20 ms per step for the default model on one CPU thread, experiments/BENCHMARKS.md) unless Lightning
    cannot clip with it, i.e. mixed precision with gradient clipping on: then foreach (a few multi-tensor kernels
    per step; the same arithmetic). Fused also needs every parameter on CPU or CUDA (``fused_supported``)."""
    clipping = bool(gradient_clip_val)
    if not fused_supported or (clipping and precision in MIXED_PRECISION):
        return "foreach"
    return "fused"
