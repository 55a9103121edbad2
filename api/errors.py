"""One table mapping exceptions to HTTP status codes; no traceback ever reaches a client."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from sqlalchemy.exc import DataError as SQLDataError, DBAPIError, OperationalError, TimeoutError as PoolTimeout

from gis.errors import AnalysisError, ConflictError
from layers.errors import Bilingual, DataError, ImportRejected

log = logging.getLogger("riskmap.api")


class NotFound(Bilingual, Exception):
    pass


class Unauthorized(Bilingual, Exception):
    pass


class Forbidden(Bilingual, Exception):
    pass


STATUS_CODES: dict[type[Exception], int] = {
    NotFound: 404,
    Unauthorized: 401,
    Forbidden: 403,
    ImportRejected: 422,
    DataError: 400,
    AnalysisError: 400,
    ConflictError: 409,
}


def _json(status: int, code: str, message: str, zh: str | None = None, headers: dict | None = None,
          **extra) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer", **(headers or {})} if status == 401 else headers
    said = {"description": message, "description_zh": zh} if zh else {"description": message}
    return JSONResponse({"code": code, **said, **extra}, status_code=status, headers=headers)


# Pydantic's validation error types in Chinese ({where}: the field; {x}: ctx values); others: a generic line.
_VALIDATION_ZH = {
    "missing": "缺少 {where}", "extra_forbidden": "不接受字段 {where}",
    "greater_than": "{where} 应大于 {gt}", "greater_than_equal": "{where} 应不小于 {ge}",
    "less_than": "{where} 应小于 {lt}", "less_than_equal": "{where} 应不大于 {le}",
    "string_too_short": "{where} 至少 {min_length} 个字符", "string_too_long": "{where} 至多 {max_length} 个字符",
    "too_short": "{where} 至少 {min_length} 项", "too_long": "{where} 至多 {max_length} 项",
    "string_pattern_mismatch": "{where} 格式不符（{pattern}）", "literal_error": "{where} 应为 {expected} 之一",
    "enum": "{where} 应为 {expected} 之一", "finite_number": "{where} 应为有限数",
    "int_parsing": "{where} 应为整数", "int_type": "{where} 应为整数", "int_from_float": "{where} 应为整数",
    "float_parsing": "{where} 应为数字", "float_type": "{where} 应为数字", "bool_parsing": "{where} 应为 true 或 false",
    "bool_type": "{where} 应为 true 或 false", "string_type": "{where} 应为文本", "list_type": "{where} 应为列表",
    "dict_type": "{where} 应为对象", "model_attributes_type": "{where} 应为对象",
    "datetime_parsing": "{where} 不是有效的时间（ISO 8601，如 2026-03-02T10:00:00+08:00）",
    "datetime_from_date_parsing": "{where} 不是有效的时间（ISO 8601）", "date_parsing": "{where} 不是有效的日期（如 2026-03-02）",
    "date_from_datetime_parsing": "{where} 不是有效的日期（如 2026-03-02）",
}


def _validation_zh(e: dict, where: str) -> str:
    """One pydantic validation error in Chinese."""
    ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in (e.get("ctx") or {}).items()}
    try:
        return _VALIDATION_ZH[e.get("type")].format(where=where, **ctx)
    except (KeyError, IndexError):
        return f"{where} 有误（详见英文说明）"


ERROR_SCHEMA = {"type": "object", "required": ["code", "description"], "title": "Error",
                "properties": {"code": {"type": "string"}, "description": {"type": "string"},
                               "description_zh": {"type": "string", "description": "the same in Chinese, where given"}}}


def _openapi_errors(app: FastAPI):
    """The app's OpenAPI document, saying what the API really answers to a bad parameter or body: a 400 in
    the error shape (FastAPI documents its own 422 HTTPValidationError, which the handler below replaces)."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        error = {"description": "Bad parameter or body", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for operations in schema.get("paths", {}).values():
            for op in operations.values():
                responses = op.get("responses", {})
                if "HTTPValidationError" in str(responses.get("422", "")):
                    del responses["422"]
                    responses.setdefault("400", error)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        components["Error"] = ERROR_SCHEMA
        app.openapi_schema = schema
        return schema
    return openapi


def install(app: FastAPI, refused_before_body) -> None:
    """The handlers; ``refused_before_body(request)``: the 401/403 error (or None) owed to a caller whose body could
    not be parsed (``api.deps.refused_before_body``: FastAPI parses a body before it checks the role)."""
    app.openapi = _openapi_errors(app)

    def known(exc: Exception) -> JSONResponse:
        extra = {}
        if isinstance(exc, ImportRejected):
            extra["rejections"] = [{"row": r.row, "reason": r.reason} for r in exc.rejections[:500]]
        status = next(STATUS_CODES[c] for c in type(exc).__mro__ if c in STATUS_CODES)
        return _json(status, type(exc).__name__, str(exc), getattr(exc, "zh", None), **extra)

    for exc_class in STATUS_CODES:
        app.add_exception_handler(exc_class, lambda request, exc: known(exc))

    @app.exception_handler(StarletteHTTPException)
    def http(request: Request, exc: StarletteHTTPException):  # unknown paths and methods: the same shape
        refused = refused_before_body(request) if exc.status_code == 400 else None  # (a body FastAPI could not parse)
        if refused is not None:
            return known(refused)
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        message = {404: f"no such path {request.url.path}; see /docs",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        zh = {404: f"没有这个地址 {request.url.path}（见 /docs）",
              405: f"{request.url.path} 不接受 {request.method} 请求"}.get(exc.status_code)
        cause = str(exc.__cause__ or "")  # (FastAPI's bare "There was an error parsing the body", e.g. of JSON that
        if exc.status_code == 400 and cause and cause not in message:  # is not UTF-8: say why)
            message = f"{message}: {cause}"
        return _json(exc.status_code, code, message, zh, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def validation(request: Request, exc: RequestValidationError):
        if any(e.get("type") == "json_invalid" for e in exc.errors()):  # (raised before the dependencies ran)
            refused = refused_before_body(request)
            if refused is not None:
                return known(refused)
        msgs, zhs = [], []
        for e in exc.errors():
            if tuple(e.get("loc", ())) == ("body",) and e.get("type") in ("model_attributes_type", "dict_type"):
                msgs.append("the request body must be a JSON object (Content-Type: application/json)")
                zhs.append("请求体应为 JSON 对象（Content-Type: application/json）")
                continue
            if e.get("type") == "json_invalid":  # (its loc is ("body", offset): it read "0: JSON decode error")
                at = e["loc"][-1] if len(e.get("loc", ())) > 1 and isinstance(e["loc"][-1], int) else None
                msgs.append(f"the request body is not valid JSON: {(e.get('ctx') or {}).get('error', e.get('msg'))}"
                            + (f": character {at}" if at is not None else ""))  # (json's "… at: line 1 …")
                zhs.append("请求体不是有效的 JSON" + (f"（第 {at} 个字符处）" if at is not None else ""))
                continue
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body"))
            msgs.append(f"{where}: {e.get('msg')}" if where else e.get("msg"))
            zhs.append(_validation_zh(e, where or "请求体"))
        return _json(400, "InvalidParameter", "; ".join(msgs), "；".join(zhs))

    def db_down(request: Request, exc: Exception):
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return _json(503, "DatabaseUnavailable", "the database is unavailable; retry shortly", "数据库暂时不可用，请稍后重试",
                     headers={"Retry-After": "5"})

    def is_connection_error(exc: DBAPIError) -> bool:
        return isinstance(exc, OperationalError) or exc.connection_invalidated

    @app.exception_handler(DBAPIError)
    def dbapi(request: Request, exc: DBAPIError):
        if is_connection_error(exc):
            return db_down(request, exc)
        if isinstance(exc, SQLDataError):  # a value the database cannot hold: a NUL in text, a number out of range
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
            return _json(400, "InvalidValue", f"a value given cannot be stored or compared: {reason}",
                         "所给的值无法保存或比较（详见英文说明）")
        log.error("database error on %s", request.url.path, exc_info=exc)  # (handlers run outside the except)
        return _json(500, "InternalError", "internal error (logged)", "服务器内部错误（已记录）")

    app.add_exception_handler(PoolTimeout, db_down)

    @app.exception_handler(Exception)
    def anything(request: Request, exc: Exception):
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return _json(500, "InternalError", "internal error (logged)", "服务器内部错误（已记录）")
