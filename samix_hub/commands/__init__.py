"""One module per ``samix-hub`` sub-command; each exposes ``command`` (a ``click.Command``)."""
