"""LightningModules: :mod:`.captioner` (the thin ``CaptionerModule``) around the plain-torch model in :mod:`.model`;
:mod:`.pair_metrics` (evaluation metrics that count each pair once on any number of processes) and
:mod:`.schedules` (the learning-rate schedule) beside it; :mod:`.scene_pretrainer` (``make pretrain``)."""
