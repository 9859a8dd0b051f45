"""Entry point of ``python -m lambda_db_setup``."""

from .cli import MODULE_PROG, run

run(MODULE_PROG)
