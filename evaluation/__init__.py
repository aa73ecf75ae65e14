"""The field's caption metrics, in plain Python (no Lightning): :mod:`.scoring` runs pycocoevalcap's scorers
(PTB tokenizer, BLEU, METEOR, ROUGE-L, CIDEr-D, optional SPICE) once per evaluation and rescores every subset
(change category, group, benchmark); it also writes the COCO-format files anyone can rescore."""
