"""Benchmarks of the migration engine against node-pg-migrate and psql: ``python -m bench`` (or ``bench/run``)."""
