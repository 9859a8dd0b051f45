"""The mark on each role the run manages: a ``COMMENT ON ROLE`` saying, per database, what it was declared as.

``lambda_db_setup:{"app": {"kind": "group", "privilege": "write", "schemas": ["public"]}}``. Roles are
server-wide, privileges per database, so the mark keeps one entry per database that declares the role.
It makes a role recognisable as this tool's, and remembers the last declaration: what a group had (so a
lower level or a dropped schema can be taken back) and which groups and users a database no longer
declares (so they can be retired). A role without the mark (made by hand, or before marks existed) is
never retired and nothing is taken back from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from .rolespec import AppGroup

PREFIX = "lambda_db_setup:"
GROUP = "group"
USER = "user"


class Marks:
    """Every marked role's entries: role name -> database -> entry."""

    def __init__(self, entries: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.entries = entries

    def entry(self, role: str, database: str) -> dict[str, Any] | None:
        return self.entries.get(role, {}).get(database)

    def names(self, database: str, kind: str) -> set[str]:
        return {name for name, entry in self.for_database(database) if entry.get("kind") == kind}

    def for_database(self, database: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name in sorted(self.entries):
            if database in self.entries[name]:
                yield name, self.entries[name][database]

    def declared_elsewhere(self, role: str, database: str) -> bool:
        return any(other != database for other in self.entries.get(role, {}))

    def groups_elsewhere(self, user: str, database: str) -> set[str]:
        """The groups other databases declare ``user`` in: memberships are server-wide, so those stay."""
        return {
            entry.get("group")
            for other, entry in self.entries.get(user, {}).items()
            if other != database and entry.get("kind") == USER
        }


def read(cursor: Cursor) -> Marks:
    """The marks of every role on the server; a comment that only looks like one is not ours and is skipped."""
    cursor.execute(
        "SELECT r.rolname, d.description FROM pg_roles r JOIN pg_shdescription d"
        " ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::regclass"
        " WHERE starts_with(d.description, %s)",
        (PREFIX,),
    )
    entries = {}
    for name, description in cursor.fetchall():
        try:
            document = json.loads(description[len(PREFIX) :])
        except json.JSONDecodeError:
            continue
        if isinstance(document, dict) and all(isinstance(entry, dict) for entry in document.values()):
            entries[name] = document
    return Marks(entries)


def write(
    cursor: Cursor, marks: Marks, database: str, groups: Sequence[AppGroup], users: Sequence[tuple[str, str]]
) -> None:
    """This database's entries as declared now (``users`` as (name, group)), the others' kept; only changes."""
    declared = {group.name: _group_entry(group) for group in groups}
    declared |= {name: {"kind": USER, "group": group} for name, group in users}
    roles = set(declared) | {name for name, _ in marks.for_database(database)}
    for role in sorted(roles):
        current = marks.entries.get(role, {})
        wanted = {other: entry for other, entry in current.items() if other != database}
        if role in declared:
            wanted[database] = declared[role]
        if wanted != current:
            text = PREFIX + json.dumps(wanted, sort_keys=True, separators=(",", ":"))
            cursor.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(text)))


def _group_entry(group: AppGroup) -> dict[str, Any]:
    return {"kind": GROUP, "privilege": group.privilege, "schemas": list(group.schemas)}
