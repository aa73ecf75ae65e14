"""Compare backbones and/or experiments under one budget, beside zero-shot models and other methods' predictions:
``make compare BACKBONES="siglip clip vit_small_patch16_224" [EXP="default ablations"] [MODELS=..] [PREDS=..]
[DATA=..] [SPLIT=val|test] [ARGS=..]``.

Every run (experiment x backbone) trains with the same data, seed and budget (``ARGS`` apply to all, e.g.
``ARGS="trainer.max_steps=2000"``) through ``experiments.train``, each in its own Python process: a run that
fails (or runs out of memory) becomes a row marked ``failed`` and the others go on. Runs land side by side
in TensorBoard (``logs/<experiment>/<backbone>/version_N``, hparams tab names the backbone and MDP switches).
After every run the table is rewritten, so an interrupted comparison keeps what it has:

    <logs_dir>/<name>/compare.md    overall scores, per-category CIDEr, reference baselines (x100)
    <logs_dir>/<name>/compare.json  the same rows with every final validation metric and the run folders
    <logs_dir>/<name>/runs/*.log    each run's console output

``<name>`` is the experiment's name when one experiment is swept, else ``compare`` (``--name`` sets it).
``EXP`` takes experiment names (``ablations/no_gate``) and folders under ``experiments/`` (``ablations`` =
every YAML in it); ``default`` is the base config. ``BACKBONES`` empty: the config's backbone (``siglip``
and ``clip`` when ``EXP``, ``MODELS`` and ``PREDS`` are empty too).

Rows not trained here, in the same table (``experiments/compare/external.py``), scored on the same data and split:

    MODELS="<folder or cached hub id> ..."   zero-shot rows: ``make eval MODEL=<model>`` each, in its own process
                                             (files in <name>/zero_shot/<model>/)
    PREDS="name=<pred.json> ..."             another method's released predictions (COCO results
                                             ``[{"image_id", "caption"}]`` with the benchmark's ids), scored as
                                             ``make score`` does on files written to <name>/imported/<name>/; ids
                                             that match no pair of the split and pairs left unpredicted are listed
                                             (the row is marked ``partial``), never dropped silently
    SPLIT=val|test                           the split every row is scored on (default val: the trained runs'
                                             final validation); test scores each trained run's best checkpoint

Both are checked (folder, processor, file) before any training. Exit status: 0 all rows succeeded, 1 some
failed, 2 bad config or input.
"""

from experiments.compare.cli import main

__all__ = ["main"]
