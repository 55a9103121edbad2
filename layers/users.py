"""API users and their tokens (only a SHA-256 hash of each token is stored)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Connection, select, update

from layers.errors import DataError
from layers.models import User
from layers.registry import ROLES


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(conn: Connection, name: str, role: str) -> str:
    """Create a user (or give an existing one a new token and role); returns the new token."""
    if role not in ROLES or role == "anonymous":
        raise DataError(f"unknown role {role!r}; roles: {', '.join(r for r in ROLES if r != 'anonymous')}")
    if not name or len(name) > 100:
        raise DataError("user name must be 1-100 characters")
    token = secrets.token_urlsafe(32)
    table = User.__table__
    existing = conn.execute(select(table.c.id).where(table.c.name == name)).scalar()
    if existing:
        conn.execute(update(table).where(table.c.id == existing).values(
            role=role, token_hash=hash_token(token), active=True))
    else:
        conn.execute(table.insert().values(name=name, role=role, token_hash=hash_token(token)))
    return token


def user_state(conn: Connection, name: str) -> tuple[str, bool] | None:
    """(role, active) of the user ``name``, or None when there is none."""
    table = User.__table__
    row = conn.execute(select(table.c.role, table.c.active).where(table.c.name == name)).first()
    return None if row is None else (row.role, row.active)


def user_for_token(conn: Connection, token: str) -> tuple[str, str] | None:
    """(name, role) of the active user holding ``token``, or None."""
    table = User.__table__
    row = conn.execute(
        select(table.c.name, table.c.role).where(table.c.token_hash == hash_token(token), table.c.active)
    ).first()
    return (row.name, row.role) if row else None


def list_users(conn: Connection) -> list[dict]:
    table = User.__table__
    rows = conn.execute(select(table.c.name, table.c.role, table.c.active, table.c.created_at).order_by(table.c.name))
    return [dict(r._mapping) for r in rows]


def remove_user(conn: Connection, name: str) -> bool:
    table = User.__table__
    return conn.execute(update(table).where(table.c.name == name).values(active=False)).rowcount > 0
