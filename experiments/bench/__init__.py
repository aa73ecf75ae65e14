"""Speed benchmarks: what the kit achieves, as a ratio to what this machine can do.

    make bench [ARGS="key=value ..."] [OUT=bench_results/bench.json]
    python -m experiments.bench [--quick] [--sections peak,train,...] [--threads N] [--out PATH] [--args "k=v ..."]

One file per section (each fills one object of the JSON file; ``report.py`` prints a table at the end):

- ``measure.py`` — ``peak``: fp32 matmul GFLOP/s on the configured threads, the machine's limit; and the
  timing tools every section uses (interleaved repeats, load conditions, the FLOP counter).
- ``rig.py`` — the training step every model section times: ``make train``'s DataModule and captioner,
  stepped through Lightning's own hooks (why not ``Trainer.fit``: its docstring).
- ``train.py`` — ``train``: the default model's step, its FLOPs and fraction of the peak, and MDP on/off at
  that scale; ``breakdown.py``: where its time goes (each module replayed alone, the profiler's top operators).
- ``mdp_base.py`` — ``mdp_base``: MDP off vs on at base scale (SigLIP-B/16 size, 224 px, GPT-2-small-size LM).
- ``generate.py`` — ``generate``: captions/s of long captions with and without the KV cache (identical tokens).
- ``score.py`` — ``score``: a CLEVR-Change-test-sized evaluation with :class:`~evaluation.CaptionScorer`
  vs pycocoevalcap's ``COCOEvalCap.evaluate()`` per subset (same scores required).
- ``data.py`` — ``data``: the embedded benchmark's pairs/s per DataLoader worker vs the step's consumption.
- ``threads.py`` — ``threads``: the default step at one thread vs the configured threads.
- ``compile.py`` — ``compile`` (opt-in): ``torch.compile`` of the whole model, cold compile vs the time it saves.
- ``cli.py`` — the command line and the order the sections run in.

Every comparison is a ratio measured within one run, with the A/B repeats interleaved and medians taken, so a
machine shared with other jobs still gives a fair comparison; each section records the 1-minute load average and
this process's run-queue wait (the share of its threads' time spent runnable but not running: 0 on a quiet
machine). ``--quick`` runs every section at toy sizes in seconds (tests); its numbers mean nothing. Results and
their interpretation: ``experiments/BENCHMARKS.md``.
"""
