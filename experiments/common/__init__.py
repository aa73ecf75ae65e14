"""What the entry points of ``experiments/`` share: the config schema (:mod:`.schema`: every key, its type and
default) and its composition (:mod:`.config`), assembling a run from it (:mod:`.runner`: backbone, DataModule,
tokenizer, captioner, callbacks, Trainer), reading checkpoints safely (:mod:`.checkpoints`) and what the
console shows (:mod:`.console`: log format, narrow filters of messages a user cannot act on)."""
