"""Which CA bundle the migration Lambda verifies its target's certificate with (``DB_CA_BUNDLE``).

An RDS Proxy presents a certificate that chains to the Amazon Root CAs, which certifi holds. A DB instance's
or an Aurora cluster's own endpoint presents one from the Amazon RDS CAs, which certifi lacks: the package
ships those (``lambda_db_setup/certs/rds-global-bundle.pem``, made by ``tools/rds_ca_bundle.py``). A team
whose CAs are neither (GovCloud, the China regions) gives its own PEM file, copied into the asset.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from lambda_db_setup.errors import ConfigurationError

CERTIFI_BUNDLE = "certifi/cacert.pem"  # asset-relative: the Amazon Root CAs among the public ones
RDS_BUNDLE = "lambda_db_setup/certs/rds-global-bundle.pem"  # asset-relative: the Amazon RDS CAs
TEAM_BUNDLE = "ca-bundle.pem"  # asset-relative: where a team's own bundle (``ca_bundle=``) is copied


def bundle_in_asset(target: object, team_bundle: Path | None) -> str:
    """The bundle's path inside the asset: the team's, else by target kind (a proxy, or a direct endpoint)."""
    if team_bundle is not None:
        return TEAM_BUNDLE
    return CERTIFI_BUNDLE if hasattr(target, "db_proxy_arn") else RDS_BUNDLE


def checked_bundle(ca_bundle: str | Path | None) -> Path | None:
    """A team's bundle, absolute, once it is known to be a readable PEM file holding at least one CA certificate."""
    if ca_bundle is None:
        return None
    path = Path(ca_bundle).resolve()
    if not path.is_file():
        raise ConfigurationError(f"ca_bundle {path} is not a file (from the working directory {Path.cwd()})")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"ca_bundle {path} holds no PEM certificate: {error}") from error
    if not context.cert_store_stats()["x509_ca"]:
        raise ConfigurationError(f"ca_bundle {path} holds no CA certificate, only a server's")
    return path
