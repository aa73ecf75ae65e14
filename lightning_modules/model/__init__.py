"""The M³Diff captioner in plain torch + transformers (no Lightning): :mod:`.m3diff` (the model),
:mod:`.language_model` (tiny or pretrained causal LM, LoRA), :mod:`.tokenizer` (caption tokenizers) and
:mod:`.build` (config values -> model)."""
