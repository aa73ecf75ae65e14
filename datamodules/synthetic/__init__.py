"""The embedded benchmark: procedural scene pairs for all twelve change categories, generated on the fly.

Modules, in dependency order (each imports only those above it):

- :mod:`.scenes`   what is in a picture (objects, cells, background, camera, light) and how it is sampled
- :mod:`.spec`     the data types: generator config, one change, one pair without pixels, pair ids
- :mod:`.grammar`  the caption grammar: vocabulary, templates and the slots of a change
- :mod:`.captions` writing references with the grammar, parsing captions back, change identification
- :mod:`.changes`  the twelve change operations and the sampling of a whole pair
- :mod:`.render`   drawing a scene with PIL
- :mod:`.datamodule` the LightningDataModule (:class:`SyntheticDataModule`)

Nothing is imported here, so the generator and the grammar stay free of Lightning.
"""
