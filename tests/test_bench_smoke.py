"""``python -m bench --quick`` runs end to end and prints every figure; no time is asserted.

node-pg-migrate is optional here: without ``bench/node_modules`` its columns must say it is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_prints_every_figure(server_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--server-url", server_url, "--work-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    for figure in ("1", "2", "3", "4", "5", "6", "7"):
        assert f"\n### {figure}. " in result.stdout
    node_installed = (PROJECT_ROOT / "bench" / "node_modules" / "node-pg-migrate").is_dir()
    assert ("not installed" not in result.stdout) == node_installed
