"""The M³Diff captioner in plain torch + transformers (no Lightning), one module each:

- :mod:`.m3diff`           the model: backbone taps -> MDP -> projector -> causal LM, loss and generation
- :mod:`.build`            config values -> :class:`~.m3diff.M3Diff` (backbone, MDP, LM; LoRA and freezing)
- :mod:`.language_model`   the causal LM: tiny random-init or pretrained by name / path, LoRA, freezing
- :mod:`.llava_onevision`  ``model.init_from``: LM, projector and image_newline of a LLaVA-OneVision folder
- :mod:`.base_model`       an adapter-only checkpoint's base folder: its path and fingerprint
- :mod:`.prompt`           the text around the two images: plain, or from the folder's chat template (one rule)
- :mod:`.tokenizer`        caption tokenizers: the LM's own, or a byte-level BPE trained on the captions
"""
