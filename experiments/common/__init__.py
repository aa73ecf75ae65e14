"""What the entry points of ``experiments/`` share, one module per job:

- :mod:`.cli`: the front door (arguments, overrides, user errors as one line with exit 2);
- :mod:`.schema` and :mod:`.config`: every config key, its type and default, and their composition;
- :mod:`.assembly`: the config resolved once and the run's parts built from it (backbone, DataModule,
  tokenizer, captioner);
- :mod:`.trainer`: the Trainer, its callbacks and strategy;
- :mod:`.checkpoints`: reading checkpoints safely, rebuilding a captioner from one, writing them whole;
- :mod:`.token_limits`, :mod:`.flops`, :mod:`.console`: caption token limits from the data, FLOP counting,
  what the console shows.
"""
