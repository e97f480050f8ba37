"""The ``samix-hub`` command line: one module per command (named as the command), the shared
options in :mod:`samix_hub.cli.options` and the group in :mod:`samix_hub.cli.main`."""
