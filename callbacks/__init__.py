"""Lightning callbacks: what happens around training and evaluation.

- :mod:`callbacks.caption_metrics`: ``CaptionMetricsCallback`` (per-category metrics with
  :mod:`evaluation`, COCO files), ``monitor_key`` and the ``CaptionRecords`` gatherer.
- :mod:`callbacks.panels`: ``PanelsCallback`` (image + caption + heatmap panels).
- :mod:`callbacks.tensorboard`: ``ScalarLayout`` (the CUSTOM SCALARS charts), ``log_bar_charts`` (metrics by
  category as figures) and ``HparamsCallback`` (HPARAMS).
- :mod:`callbacks.safety`: per-batch seeds, ``last.ckpt``, stop on a signal, stop on non-finite values.
"""
