"""On-disk names, schemas and limits of every kind samix-hub reads or writes."""
