"""Checking a password against PostgreSQL's stored verifiers, made by the server and by libpq."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql
from psycopg2.extensions import encrypt_password

from lambda_db_setup.passwords import matches


def stored_verifier(conn, role: str, password: str) -> str:
    """Let the server hash ``password`` as it does for ALTER ROLE ... PASSWORD 'plaintext'."""
    name = sql.Identifier(role)
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {}").format(name))
        try:
            cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(name, sql.Literal(password)))
            cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
            return cursor.fetchone()[0]
        finally:
            cursor.execute(sql.SQL("DROP ROLE {}").format(name))


def test_server_made_scram_verifier(conn) -> None:
    verifier = stored_verifier(conn, "verifier_probe", "correct horse")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert matches(verifier, "verifier_probe", "correct horse")
    assert not matches(verifier, "verifier_probe", "correct horse ")
    assert not matches(verifier, "verifier_probe", "")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(alphabet=string.printable, min_size=1, max_size=64))
def test_any_ascii_password_is_recognised(conn, password: str) -> None:
    verifier = encrypt_password(password, "app_rw", conn, "scram-sha-256")
    assert matches(verifier, "app_rw", password)
    assert not matches(verifier, "app_rw", password + "x")


def test_md5_verifier_includes_the_user_name(conn) -> None:
    verifier = encrypt_password("pw", "app_rw", conn, "md5")
    assert matches(verifier, "app_rw", "pw")
    assert not matches(verifier, "app_tc", "pw")


@pytest.mark.parametrize(
    "verifier",
    [
        None,
        "",
        "plaintext-password",
        "SCRAM-SHA-256$4096:not base64!$AAAA:BBBB",
        "SCRAM-SHA-256$4096:c2FsdA==",
    ],
)
def test_unknown_or_broken_verifiers_never_match(verifier: str | None) -> None:
    assert not matches(verifier, "app_rw", "plaintext-password")


def test_non_ascii_password_under_scram_is_not_decided(conn) -> None:
    """PostgreSQL normalises it with SASLprep first; the caller then just sets the password again."""
    verifier = encrypt_password("pässwörd", "app_rw", conn, "scram-sha-256")
    assert not matches(verifier, "app_rw", "pässwörd")
