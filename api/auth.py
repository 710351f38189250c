"""API tokens (访问令牌) and who is calling (调用方).

A token is ``hl_<token id>.<secret>``. Only the SHA-256 of the secret is stored; the secret is
shown once when the token is issued. Lookup is by the token id, then the hash is compared in
constant time. Roles: ``unit`` (承办单位, acts on its own orders), ``dispatcher`` (值班派单员)
and ``revisit`` (回访员). Revoked tokens answer 401 like unknown ones.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, select

from models.lifecycle import DISPATCHER_PREFIX, REVISIT_PREFIX
from models.tables import now_local

ROLE_UNIT = "unit"
ROLE_DISPATCHER = "dispatcher"
ROLE_REVISIT = "revisit"
ROLES: tuple[str, ...] = (ROLE_UNIT, ROLE_DISPATCHER, ROLE_REVISIT)
ROLE_NAMES: dict[str, str] = {
    ROLE_UNIT: "承办单位", ROLE_DISPATCHER: "派单员", ROLE_REVISIT: "回访员",
}

TOKEN_PREFIX = "hl_"
_TOKEN_RE = re.compile(r"^hl_([0-9a-f]{16})\.([A-Za-z0-9_-]{20,100})$")


#: The API's own tables live in their own metadata, created by `ensure_token_table`, so the
#: core schema (`SQLModel.metadata`, under Alembic) is unaffected by them.
API_REGISTRY = registry()


class ApiTable(SQLModel, registry=API_REGISTRY):
    """Base of the API's tables."""


class ApiToken(ApiTable, table=True):
    """One issued bearer token (访问令牌); the secret itself is never stored."""

    __tablename__ = "api_token"

    token_id: str = Field(primary_key=True, max_length=16)
    secret_hash: str = Field(max_length=64)  # SHA-256 hex of the secret
    role: str = Field(index=True)  # unit | dispatcher | revisit
    name: str = Field(index=True)  # the unit's name, or the person's name
    created_at: datetime = Field(
        default_factory=now_local, sa_column=Column(DateTime(timezone=False), nullable=False)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=False), nullable=True)
    )


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    token_id: str
    role: str
    name: str

    @property
    def actor(self) -> str:
        """The lifecycle actor: the unit name, ``dispatcher:<name>`` or ``revisit:<name>``."""
        if self.role == ROLE_DISPATCHER:
            return DISPATCHER_PREFIX + self.name
        if self.role == ROLE_REVISIT:
            return REVISIT_PREFIX + self.name
        return self.name


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    token: str  # the full bearer token, shown once
    role: str
    name: str


def ensure_token_table(engine: Engine) -> None:
    """Create the token table when missing (idempotent)."""
    API_REGISTRY.metadata.create_all(engine)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue_token(engine: Engine, *, role: str, name: str) -> IssuedToken:
    """Create a token for a unit or a person; the caller checks that a unit name is real."""
    if role not in ROLES:
        raise ValueError(f"角色 {role!r} 无效，应为 {'/'.join(ROLES)}")
    name = name.strip()
    if not name:
        raise ValueError("令牌须有单位名称或人员姓名")
    ensure_token_table(engine)
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with Session(engine) as s:
        s.add(ApiToken(token_id=token_id, secret_hash=_hash(secret), role=role, name=name))
        s.commit()
    return IssuedToken(token_id, f"{TOKEN_PREFIX}{token_id}.{secret}", role, name)


def revoke_token(engine: Engine, token_id: str, *, name: str | None = None) -> bool:
    """Revoke a token (and only one of ``name``'s when given); False when none matched."""
    with Session(engine) as s:
        row = s.get(ApiToken, token_id.strip())
        if row is None or row.revoked_at is not None or (name is not None and row.name != name):
            return False
        row.revoked_at = now_local()
        s.add(row)
        s.commit()
    return True


def list_tokens(engine: Engine) -> list[ApiToken]:
    with Session(engine) as s:
        return list(s.exec(select(ApiToken).order_by(col(ApiToken.created_at))).all())


def authenticate(engine: Engine, bearer: str) -> Principal | None:
    """The principal for a presented token, or None (unknown, malformed or revoked)."""
    match = _TOKEN_RE.match(bearer.strip())
    if match is None:
        return None
    token_id, secret = match.groups()
    with Session(engine) as s:
        row = s.get(ApiToken, token_id)
    presented = _hash(secret)
    stored = row.secret_hash if row is not None else "0" * 64
    same = hmac.compare_digest(presented, stored)
    if row is None or not same or row.revoked_at is not None:
        return None
    return Principal(token_id=row.token_id, role=row.role, name=row.name)
