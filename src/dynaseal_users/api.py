"""The route table, request parsing and the OpenAPI document, all from one description.

Each view is declared once with :func:`operation` (method, path, models, statuses); the app
factory registers the declared routes and ``/openapi.json`` is generated from the same
declarations and the pydantic models, so no route, body, status or error is written twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException, UnsupportedMediaType

from .models import ID_PATTERN, ErrorBody, FieldError, field_errors

__all__ = ["OPERATIONS", "ApiError", "Operation", "openapi", "operation", "parse_body",
           "parse_query"]

BODY_ERRORS = (400, 413, 415, 422)
DESCRIPTIONS = {
    400: "the body is not valid JSON",
    401: "no valid bearer token (or, for POST /sessions, wrong credentials)",
    403: "authenticated, but not allowed to do this to this record",
    404: "no such record visible to the caller (foreign, unknown and malformed ids alike)",
    409: "the e-mail address is already registered (in any letter case)",
    413: "the body is over 16 KiB",
    415: "the body is not application/json (UTF-8)",
    422: "the body or query does not match the schema; names the fields, never the values",
    429: "too many failed logins from this address or for this account",
}


class ApiError(HTTPException):
    """An HTTP error with the service's JSON body: a code word, a message, maybe fields."""

    def __init__(self, status: int, error: str, message: str,
                 fields: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = status
        self.body = ErrorBody(error=error, message=message, fields=fields)
        self.extra_headers = headers or {}


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str
    summary: str
    view: Callable[..., Any]
    status: int
    response: type[BaseModel] | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    auth: bool
    errors: tuple[int, ...]
    limited: bool

    @property
    def path(self) -> str:
        """The OpenAPI spelling of the Flask rule: ``<user_id>`` becomes ``{user_id}``."""
        return self.rule.replace("<", "{").replace(">", "}")

    def statuses(self) -> list[int]:
        out = set(self.errors)
        if self.body is not None:
            out.update(BODY_ERRORS)
        if self.query is not None:
            out.add(422)
        if self.auth:
            out.add(401)
        if "<user_id>" in self.rule:
            out.add(404)
        if self.limited:
            out.add(429)
        return sorted(out)


OPERATIONS: list[Operation] = []
M = TypeVar("M", bound=BaseModel)


def operation(method: str, rule: str, summary: str, *, status: int = 200,
              response: type[BaseModel] | None = None, body: type[BaseModel] | None = None,
              query: type[BaseModel] | None = None, auth: bool = False,
              errors: tuple[int, ...] = (), limited: bool = False
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a route. The view gets ``body=`` and ``query=`` as validated models and, with
    ``auth=True``, ``actor=`` (the authenticated user's record)."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        OPERATIONS.append(Operation(method, rule, summary, view, status, response, body, query,
                                    auth, errors, limited))
        return view

    return register


# -- parsing ---------------------------------------------------------------------------------


def _invalid(e: ValidationError, model: type[BaseModel]) -> ApiError:
    fields = field_errors(e.errors(include_url=False, include_context=False,  # type: ignore[arg-type]
                                   include_input=False), set(model.model_fields))
    return ApiError(422, "invalid_request", "the request does not match the schema", fields)


def parse_body(model: type[M]) -> M:
    """The JSON body validated by ``model``: 415 unless application/json in UTF-8, 413 over the
    size limit (Flask's MAX_CONTENT_LENGTH), 400 if not JSON, 422 if not the schema."""
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype != "application/json" or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("send the body as application/json")
    raw = request.get_data(cache=True)
    try:
        json.loads(raw)
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as e:
        raise _invalid(e, model) from None


_NO_QUERY: dict[type[BaseModel], BaseModel] = {}
"""Per query model, what an empty query string validates to: request models are frozen, so
one instance serves every request that sends no query (most of them)."""


def parse_query(model: type[M]) -> M:
    """The query string validated by ``model``; a repeated parameter is refused."""
    if not request.query_string and model.model_config.get("frozen"):
        empty = _NO_QUERY.get(model)
        if empty is None:
            empty = _NO_QUERY[model] = _validate_query(model, {})
        return cast(M, empty)
    args = request.args
    if any(len(args.getlist(k)) > 1 for k in args):
        raise ApiError(422, "invalid_request", "a query parameter is repeated",
                       [FieldError(field="(query)", problem="repeated parameter")])
    return _validate_query(model, dict(args.items()))


def _validate_query(model: type[M], args: dict[str, str]) -> M:
    try:
        return model.model_validate(args, strict=True)
    except ValidationError as e:
        raise _invalid(e, model) from None


# -- OpenAPI 3.1 -----------------------------------------------------------------------------


def openapi(title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared operation, from the pydantic models."""
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel], mode: str) -> dict[str, str]:
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                      mode=mode)  # type: ignore[arg-type]
        schemas.update(doc.pop("$defs", {}))
        schemas[model.__name__] = doc
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    error = {"application/json": {"schema": ref(ErrorBody, "serialization")}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": op.summary}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": ref(op.response, "serialization")}}
        responses[str(op.status)] = ok
        for status in op.statuses():
            responses[str(status)] = {"description": DESCRIPTIONS[status], "content": error}
        if op.limited:
            responses["429"]["headers"] = {"Retry-After": {
                "description": "seconds to wait", "schema": {"type": "string"}}}
        if op.auth:
            responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        entry: dict[str, Any] = {"summary": op.summary, "operationId": op.view.__name__,
                                 "responses": responses}
        params: list[dict[str, Any]] = []
        if "<user_id>" in op.rule:
            params.append({"name": "user_id", "in": "path", "required": True,
                           "schema": {"type": "string", "pattern": ID_PATTERN}})
        if op.query is not None:
            for name, prop in op.query.model_json_schema()["properties"].items():
                params.append({"name": name, "in": "query", "required": False,
                               "schema": prop})
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": ref(op.body, "validation")}}}
        if op.auth:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
