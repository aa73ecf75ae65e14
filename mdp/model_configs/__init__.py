"""open_clip model configs of the tiny random-init test models (registered via ``open_clip.add_model_config``).

Each ``<name>.json`` is a regular open_clip config; ``<name>`` becomes an open_clip model name.
"""
