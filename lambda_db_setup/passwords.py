"""Check a password against the verifier PostgreSQL stores in ``pg_authid.rolpassword``, without logging in.

Setting a role's password again stores a new random salt, so a rerun would not be a no-op; comparing
first lets the roles step skip ``ALTER ROLE ... PASSWORD`` when the secret still holds the current
password. SCRAM-SHA-256 follows RFC 5802/7677 as PostgreSQL implements it; MD5 is ``md5(password || user)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

SCRAM_VERIFIER = re.compile(
    r"^SCRAM-SHA-256\$(?P<iterations>\d+):(?P<salt>[^$]+)\$(?P<stored_key>[^:]+):(?P<server_key>[^:]+)$"
)
MD5_VERIFIER = re.compile(r"^md5[0-9a-f]{32}$")


def matches(verifier: str | None, username: str, password: str) -> bool:
    """True when ``verifier`` was made from ``password``; False when not, or when it cannot be told.

    "Cannot be told" (no verifier, an unknown format, a non-ASCII password under SCRAM, which PostgreSQL
    first normalises with SASLprep) answers False: the caller then sets the password, which is always safe.
    """
    if not verifier:
        return False
    if MD5_VERIFIER.match(verifier):
        expected = "md5" + hashlib.md5((password + username).encode()).hexdigest()
        return hmac.compare_digest(verifier, expected)
    scram = SCRAM_VERIFIER.match(verifier)
    if scram is None or not password.isascii():  # ASCII passes SASLprep unchanged (or falls back to raw bytes)
        return False
    try:
        salt = base64.b64decode(scram["salt"], validate=True)
        stored_key = base64.b64decode(scram["stored_key"], validate=True)
        server_key = base64.b64decode(scram["server_key"], validate=True)
    except binascii.Error:
        return False
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(scram["iterations"]))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key) and hmac.compare_digest(
        hmac.digest(salted, b"Server Key", "sha256"), server_key
    )
