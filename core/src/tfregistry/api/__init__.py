"""The REST API under ``/api/v1`` (flask-smorest; OpenAPI at ``/api/openapi.json``).

The OpenAPI document is the contract (a meta-test and schemathesis hold the API to it): every
error any ``/api/v1`` operation can answer is declared with :class:`ErrorSchema`, the body that
:func:`api_error` and the HTTP-exception handler emit; path ids are bounded to the database's
integer range (:class:`IdConverter`); operations anyone may call are marked with :data:`PUBLIC`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Flask, jsonify
from flask_smorest import Api
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from tfregistry import __version__

#: The largest id a row can have: ids are 32-bit ``INTEGER`` columns on PostgreSQL.
MAX_ID = 2**31 - 1

#: ``security`` of an operation that anonymous callers may use (a token may still widen what they see).
PUBLIC: list[dict[str, list[str]]] = [{}, {"bearer": []}]


class ErrorSchema(ma.Schema):
    """The body of every ``/api/v1`` error: ``{"code": 404, "status": "Not Found", "message": "..."}``;
    request validation errors (422) add ``errors``: field name → messages, per location."""

    code = ma.fields.Integer(required=True, metadata={"description": "The HTTP status code", "example": 404})
    status = ma.fields.String(required=True, metadata={"description": "The HTTP status phrase",
                                                       "example": "Not Found"})
    message = ma.fields.String(metadata={"description": "What went wrong, for a person",
                                         "example": "organization 'acme' not found"})
    errors = ma.fields.Dict(metadata={"description": "Validation errors by location and field (422 only)"})


class IdConverter(IntegerConverter):
    """``<id:name>``: a row id, 0 to :data:`MAX_ID`; anything else does not match the route (404) instead of
    overflowing the database driver."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, min=0, max=MAX_ID)


class FullMatch(ma.validate.Regexp):
    """:class:`marshmallow.validate.Regexp` that must match the whole value (``$`` would let a trailing
    newline through); the pattern is also published in the OpenAPI document."""

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


def pattern(regex: str, error: str | None = None) -> FullMatch:
    """A full-match validator for ``regex`` (write it ECMAScript-compatible: it goes into the document)."""
    return FullMatch(re.compile(regex), error=error or f"must match {regex}")


# (status, description, headers) of the errors operations declare; see RegistryApi._declare_errors.
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer realm", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}
_DESCRIPTIONS = {
    400: "The request is well-formed but the registry refuses its content",
    401: "No credentials, or credentials that are not valid",
    403: "The caller may not do this",
    404: "Not found (or not visible to the caller)",
    409: "Conflicts with the current state",
    413: "The upload is larger than this registry accepts",
    422: "The request does not match the declared parameters or body",
    429: "Too many requests (authentication failures, sign-ins, uploads); see Retry-After",
    503: "The database or storage backend is unavailable; see Retry-After",
}


class RegistryApi(Api):
    """flask-smorest's :class:`Api` holding the registry's conventions (see the module docstring)."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        """The error object, keeping the exception's own headers (``Allow`` on 405, ``Retry-After`` ...)."""
        payload, code, headers = super().handle_http_exception(error)
        payload.setdefault("message", error.description or HTTPStatus(code).phrase)
        kept = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return payload, code, {**kept, **(headers or {})}

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        before = {path: set(ops) for path, ops in self.spec._paths.items()}
        super().register_blueprint(blp, parameters=parameters, **options)
        for path, operations in self.spec._paths.items():
            for method, operation in operations.items():
                if method in ("get", "put", "post", "patch", "delete") and method not in before.get(path, ()):
                    self._declare_errors(path, operation)

    def _declare_errors(self, path: str, operation: dict[str, Any]) -> None:
        """Declare the errors the shared handlers can answer for this operation:

        - 401 and 429 everywhere (a bad token is refused anywhere; authentication failures are rate limited),
          503 everywhere (database or storage unavailable);
        - 403 where a token is required; 404 with path parameters (or when the operation says so);
        - 400 and 422 where the request carries parameters or a body; 413 for multipart uploads.
        """
        codes = {401, 429, 503}
        secured = operation.get("security") != PUBLIC
        has_path = "{" in path
        body = operation.get("requestBody", {}).get("content", {})
        has_input = has_path or bool(body) or any(p.get("in") == "query" for p in operation.get("parameters", []))
        if secured:
            codes.add(403)
        if has_path or secured:
            codes.add(404)
        if has_input:
            codes |= {400, 422}
        if "multipart/form-data" in body:
            codes.add(413)
        responses = operation.setdefault("responses", {})
        for code in sorted(codes):
            if str(code) in responses:
                continue
            response = {"description": _DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            if code in _HEADERS:
                response["headers"] = _HEADERS[code]
            responses[str(code)] = response


def make_api(app: Flask) -> Api:
    app.config.update(
        API_TITLE="tfregistry",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}]},
    )
    app.url_map.converters["id"] = IdConverter
    api = RegistryApi(app)
    api.register_converter(IdConverter, lambda _: {"type": "integer", "minimum": 0, "maximum": MAX_ID})
    return api


def api_error(status: int, message: str, **headers: str) -> Any:
    """The ``/api/v1`` error object (:class:`ErrorSchema`): ``{"code": 404, "status": "Not Found", "message": ...}``."""
    response = jsonify(code=status, status=HTTPStatus(status).phrase, message=message)
    response.status_code = status
    response.headers.update(headers)
    return response


def errors(blp: Any, *codes: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare errors an operation of ``blp`` answers beyond the ones :class:`RegistryApi` declares for every
    operation of its kind (409, say); the body is :class:`ErrorSchema`."""
    ref = {"$ref": "#/components/schemas/Error"}
    return blp.doc(responses={str(code): {
        "description": _DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
        "content": {"application/json": {"schema": ref}}} for code in codes})


# --- shared field rules: the same rules the services apply, published in the document -------------------

#: A module namespace or name (services.modules.NAME_RE).
MODULE_NAME = r"^[0-9A-Za-z]([0-9A-Za-z_-]*[0-9A-Za-z])?$"
#: A module's target system (services.modules.SYSTEM_RE).
MODULE_SYSTEM = r"^[0-9a-z]+$"
#: A provider namespace or type (provider_packages.validate_provider_address); at most 64 characters.
PROVIDER_NAME = r"^[a-z0-9]+(-[a-z0-9]+)*$"
#: Semantic version 2.0.0 (semver.org's expression, ASCII digits); at most MAX_VERSION characters.
SEMVER = (r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
          r"(-(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?"
          r"(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?$")
MAX_VERSION = 128
#: Plugin protocol versions, comma-separated (majors 4 to 6).
PROTOCOLS = r"^([4-6]\.(0|[1-9][0-9]*)(, ?[4-6]\.(0|[1-9][0-9]*))*)?$"
#: Free text (display names, descriptions, notes): bounded, so it fits its column and logs.
MAX_TEXT = 2000
#: Text without NUL characters (PostgreSQL text cannot hold them).
NO_NUL = r"^[^\u0000]*$"


class SemverMatch(FullMatch):
    """:data:`SEMVER`, refused with the parser's message (which suggests a fix, e.g. dropping a leading v)."""

    def __call__(self, value: Any) -> Any:
        from tfregistry import semver

        try:
            semver.parse(value)
        except semver.InvalidVersion as exc:
            raise ma.ValidationError(str(exc)) from None
        return super().__call__(value)


def module_name(label: str, **kwargs: Any) -> ma.fields.String:
    """A module namespace or name; ``label`` names it in the error message."""
    error = (f"invalid module {label}: use 1-64 letters, digits, '-' or '_', starting and ending with a letter "
             "or digit")
    return ma.fields.String(validate=[ma.validate.Length(1, 64, error=error), pattern(MODULE_NAME, error)],
                            **kwargs)


def provider_name(label: str, **kwargs: Any) -> ma.fields.String:
    """A provider namespace or type; ``label`` names it in the error message."""
    error = (f"invalid provider {label}: use 1-64 lower-case letters, digits and single dashes, not starting or "
             "ending with a dash (e.g. acme/foo, acme/my-cloud)")
    return ma.fields.String(validate=[ma.validate.Length(1, 64, error=error), pattern(PROVIDER_NAME, error)],
                            **kwargs)


def version_field(**kwargs: Any) -> ma.fields.String:
    """A semantic version of at most :data:`MAX_VERSION` characters."""
    too_long = f"invalid version: at most {MAX_VERSION} characters"
    return ma.fields.String(validate=[ma.validate.Length(max=MAX_VERSION, error=too_long),
                                      SemverMatch(re.compile(SEMVER))], **kwargs)


def text(max_length: int = MAX_TEXT, min_length: int | None = None, **kwargs: Any) -> ma.fields.String:
    """Free text of at most ``max_length`` characters, without NUL."""
    return ma.fields.String(validate=[ma.validate.Length(min_length, max_length),
                                      pattern(NO_NUL, "must not contain NUL characters")], **kwargs)


class StrictBoolean(ma.fields.Boolean):
    """A JSON boolean: ``true`` or ``false`` only (the document says boolean; 0, 1 and "yes" are refused)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def flag(**kwargs: Any) -> ma.fields.Boolean:
    """A :class:`StrictBoolean` field."""
    return StrictBoolean(**kwargs)


def whole(**kwargs: Any) -> ma.fields.Integer:
    """A JSON integer (``"60"`` and ``60.5`` are refused)."""
    return ma.fields.Integer(strict=True, **kwargs)


def load_multipart(schema: ma.Schema, lists: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a ``multipart/form-data`` body (form fields and files together, as one documented schema);
    a mismatch is a 422 whose ``errors`` name the fields, like every other validation error."""
    from flask import request
    from flask_smorest import abort

    data: dict[str, Any] = request.form.to_dict()
    for name, upload in request.files.items():
        data[name] = request.files.getlist(name) if name in lists else upload
    try:
        return schema.load(data, unknown=ma.EXCLUDE)
    except ma.ValidationError as exc:
        abort(422, errors={"form": exc.messages}, message="the form does not match the declared fields")
        raise  # unreachable: abort raises
