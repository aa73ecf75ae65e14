"""The kit's entry points and experiment configs.

- One module (or package, like ``bench/`` and ``compare/``) per command, run from the repository root as
  ``python -m experiments.<name>`` (``make <target>`` runs them): ``train``, ``evaluate``, ``caption``,
  ``score``, ``compare``, ``data_info``, ``synth``, ``bench``, ...
- Experiment YAMLs: ``default.yaml``, ``ablations/`` (one MDP switch each), ``paper/`` (the
  paper-scale setup). ``make train EXP=ablations/no_gate`` picks one.
- :mod:`experiments.common`: what the entry points share (config, run assembly, checkpoints, console).
"""
