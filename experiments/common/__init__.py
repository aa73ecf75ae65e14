"""What the entry points of ``experiments/`` share: config composition (:mod:`.config`), assembling a run
from it (:mod:`.runner`: DataModule, captioner, callbacks, Trainer) and reading checkpoints safely
(:mod:`.checkpoints`)."""
