"""Evaluation and TensorBoard callbacks.

- :mod:`callbacks.scoring`: plain-python pycocoevalcap scoring (``CaptionScorer``, ``score_captions``), no Lightning.
- :mod:`callbacks.caption_metrics`: ``CaptionMetricsCallback`` (per-category metrics, files, bar charts),
  ``monitor_key`` and the ``CaptionRecords`` gatherer.
- :mod:`callbacks.panels`: ``PanelsCallback`` (image + caption + heatmap panels) and ``HparamsCallback``.

Nothing is imported here, so ``import callbacks.scoring`` stays free of Lightning.
"""
