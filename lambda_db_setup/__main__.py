"""Entry point of ``python -m lambda_db_setup``."""

import sys

from .cli import main

sys.exit(main())
