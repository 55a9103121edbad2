"""Request dependencies: database connection, current user/role, layer lookup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Iterator

from fastapi import Depends, Header, Request
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeout

from api.errors import Forbidden, NotFound, Unauthorized
from layers import registry
from layers.registry import LayerSpec
from layers.users import hash_token, user_for_token


def get_conn(request: Request) -> Iterator[Connection]:
    with request.app.state.engine.connect() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_conn)]


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def anonymous(self) -> bool:
        return self.role == "anonymous"


ANONYMOUS = Principal("anonymous", "anonymous")


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None when it is not one."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def current_user(request: Request, conn: ConnDep,
                 authorization: Annotated[str | None, Header()] = None) -> Principal:
    # Uses the request's own connection (FastAPI shares it within a request): a second one per
    # request would let concurrent requests exhaust the pool while each waits for its second.
    # Known tokens come from the change feed's memory (emptied whenever a user changes).
    if not authorization:
        return ANONYMOUS
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("Authorization must be 'Bearer <token>'", zh="Authorization 请求头应为 'Bearer <令牌>'")
    feed, token_hash = request.app.state.changes, hash_token(token)
    found = feed.principal(token_hash)
    if found is None:
        generation = feed.token_generation()
        found = user_for_token(conn, token)
        if not found:
            raise Unauthorized("invalid or revoked token", zh="令牌无效或已撤销")
        feed.remember(token_hash, found, generation)
    request.state.user = found[0]  # (the access log names who made the request)
    return Principal(*found)


UserDep = Annotated[Principal, Depends(current_user)]


def known_role(state, headers: dict[bytes, bytes]) -> str | None:
    """For the pure-ASGI fast paths: the caller's role if known without the database (anonymous, or a
    token the change feed remembers), else None (the route then answers, asking the database)."""
    auth = headers.get(b"authorization")
    if auth is None:
        return ANONYMOUS.role
    token = bearer_token(auth.decode("latin-1"))
    known = state.changes.principal(hash_token(token)) if token else None
    return known[1] if known else None


@dataclass(frozen=True)
class RouteTemplate:
    """What a fast path puts in ``scope["route"]`` for the access log and metrics (as a route would)."""

    path: str


def has_role(role: str, *roles: str) -> bool:
    return role == "admin" or role in roles


def require_role(user: Principal, *roles: str) -> None:
    if has_role(user.role, *roles):
        return
    if user.anonymous:
        raise Unauthorized(f"login required (role: {', '.join(roles)})", zh=f"请先登录（角色：{'、'.join(roles)}）")
    raise Forbidden(f"role {user.role!r} may not do this (needs {', '.join(roles)})",
                    zh=f"角色 {user.role} 无此权限（需要 {'、'.join(roles)}）")


def needs(*roles: str):
    """A dependency giving the caller if they have one of ``roles``, else 401/403: declared as a parameter
    (``user: Annotated[Principal, Depends(needs(...))]``) it is checked before the request body is validated,
    so a caller without the role learns nothing of the body's schema."""
    def caller(user: UserDep) -> Principal:
        require_role(user, *roles)
        return user
    caller.roles = frozenset(roles)  # (read by roles_of, e.g. for GET /auth/me)
    return caller


def roles_of(alias) -> frozenset[str]:
    """The roles a ``needs(...)`` dependency admits (besides admin), given the dependency or its annotated
    alias (``Annotated[Principal, Depends(needs(...))]``): what the caller's ``can`` of ``GET /auth/me`` reads,
    so that it is the very set the endpoint enforces."""
    for meta in getattr(alias, "__metadata__", (alias,)):
        roles = getattr(getattr(meta, "dependency", meta), "roles", None)
        if roles is not None:
            return roles
    raise TypeError(f"{alias!r} is not a needs(...) dependency")


def refused_before_body(request: Request) -> Exception | None:
    """For a request whose body could not be parsed: the 401/403 its route's ``needs(...)`` would give the caller,
    else None. FastAPI parses the body before it solves any dependency, so without this a caller without the
    role would learn that the body is malformed (and the answer would depend on it)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    roles = next((d.call.roles for d in getattr(dependant, "dependencies", ()) if hasattr(d.call, "roles")), None)
    if roles is None:
        return None
    try:
        with request.app.state.engine.connect() as conn:
            require_role(current_user(request, conn, request.headers.get("authorization")), *roles)
    except (Unauthorized, Forbidden) as exc:
        return exc
    except (DBAPIError, PoolTimeout):  # (no database to ask: the 400 stands)
        return None
    return None


def layer_for(layer_id: str, user: UserDep) -> LayerSpec:
    """Path id -> registry entry the user may see; 404 unknown, 401/403 restricted."""
    try:
        spec = registry.get(layer_id)
    except KeyError:
        raise NotFound(f"unknown layer {layer_id!r}; see /collections", zh=f"没有图层 {layer_id!r}（见 /collections）") from None
    if not spec.visible_to(user.role):
        if user.anonymous:
            raise Unauthorized(f"layer {layer_id!r} is restricted: log in with a token", zh=f"图层 {layer_id!r} 受限：请用令牌登录")
        raise Forbidden(f"role {user.role!r} may not see layer {layer_id!r}", zh=f"角色 {user.role} 无权查看图层 {layer_id!r}")
    return spec


LayerDep = Annotated[LayerSpec, Depends(layer_for)]
