"""The artifact format (docs/artifacts.md): one owner for every on-disk folder samix-hub writes.

- :mod:`.format`: file names, kinds, format versions (constants only, no imports)
- :mod:`.schema`: the ``config.json`` schemas (field checks, the generator config and its
  ``encoder`` block, both ways)
- :mod:`.validate`: ``detect_kind`` / ``validate_artifact``
- :mod:`.write`: ``write_generator`` (config.json + weights, written once)
- :mod:`.load`: the one loader (``load_generator`` / ``load_backbone`` / ``read_generator``)

This file imports nothing, so that low layers can use :mod:`.format` and :mod:`.schema`.
"""
