"""One table mapping exceptions to HTTP status codes; no traceback ever reaches a client."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError as PoolTimeout

from gis.errors import AnalysisError
from layers.errors import DataError, ImportRejected

log = logging.getLogger("riskmap.api")


class NotFound(Exception):
    pass


class Unauthorized(Exception):
    pass


class Forbidden(Exception):
    pass


STATUS_CODES: dict[type[Exception], int] = {
    NotFound: 404,
    Unauthorized: 401,
    Forbidden: 403,
    ImportRejected: 422,
    DataError: 400,
    AnalysisError: 400,
}


def _json(status: int, code: str, message: str, **extra) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"code": code, "description": message, **extra}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    for exc_class, status in STATUS_CODES.items():
        def handler(request: Request, exc: Exception, status=status):
            extra = {}
            if isinstance(exc, ImportRejected):
                extra["rejections"] = [{"row": r.row, "reason": r.reason} for r in exc.rejections[:500]]
            return _json(status, type(exc).__name__, str(exc), **extra)
        app.add_exception_handler(exc_class, handler)

    @app.exception_handler(RequestValidationError)
    def validation(request: Request, exc: RequestValidationError):
        msgs = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body"))
            msgs.append(f"{where}: {e.get('msg')}" if where else e.get("msg"))
        return _json(400, "InvalidParameter", "; ".join(msgs))

    def db_down(request: Request, exc: Exception):
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return _json(503, "DatabaseUnavailable", "the database is unavailable; retry shortly")

    def is_connection_error(exc: DBAPIError) -> bool:
        return isinstance(exc, OperationalError) or exc.connection_invalidated

    @app.exception_handler(DBAPIError)
    def dbapi(request: Request, exc: DBAPIError):
        if is_connection_error(exc):
            return db_down(request, exc)
        log.exception("database error on %s", request.url.path)
        return _json(500, "InternalError", "internal error (logged)")

    app.add_exception_handler(PoolTimeout, db_down)

    @app.exception_handler(Exception)
    def anything(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return _json(500, "InternalError", "internal error (logged)")
