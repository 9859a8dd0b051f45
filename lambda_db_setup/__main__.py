"""Entry point of ``python -m lambda_db_setup``."""

from .cli import run

run()
