"""Lightning callbacks: what happens around training and evaluation.

- :mod:`callbacks.caption_metrics`: ``CaptionMetricsCallback`` (per-category metrics with
  :mod:`evaluation`, COCO files) and ``monitor_key``.
- :mod:`callbacks.confusion`: the change-category confusion matrix (true vs read from the caption), counted
  with torchmetrics, as ``confusion.json``, a Markdown table and a TensorBoard figure.
- :mod:`callbacks.panels`: ``PanelsCallback`` (image + caption + heatmap panels).
- :mod:`callbacks.tensorboard`: ``ScalarLayout`` (the CUSTOM SCALARS charts), ``log_bar_charts`` (metrics by
  category as figures) and ``HparamsCallback`` (HPARAMS).
- :mod:`callbacks.progress`: the console progress, chosen explicitly (tqdm on a terminal, ``ProgressLines``
  in a log file).
- :mod:`callbacks.safety`: per-batch seeds, ``last.ckpt``, stop on a signal, stop on non-finite values.
"""
