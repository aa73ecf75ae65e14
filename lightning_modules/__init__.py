"""LightningModules: :mod:`.captioner` (the thin ``CaptionerModule``) around the plain-torch model in :mod:`.model`."""
