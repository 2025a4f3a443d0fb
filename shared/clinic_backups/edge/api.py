"""HTTP plumbing shared by every function: the resolver, authentication, request parsing,
and the single mapping of errors to HTTP responses.

Client errors (4xx) are logged at info without a stack trace; only 5xx gets
`logger.exception`. No response or log line carries a token, claims, a connection string or a
signed URL. Every response carries `X-Content-Type-Options: nosniff` and
`Cache-Control: no-store` (answers hold patient metadata, and the download answer a signed
URL: no cache may keep them), and every body is `application/json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from pydantic import BaseModel, ValidationError

from clinic_backups.domain.errors import (
    ApiError,
    ConfigurationError,
    FieldProblem,
    ForeignKeyPrefix,
    RouteNotFound,
    ValidationFailed,
)
from clinic_backups.domain.models import AuditEntry, TenantContext
from clinic_backups.edge.auth import InvalidClaims, authenticate
from clinic_backups.edge.inputs import read_json_body
from clinic_backups.observability import logger
from clinic_backups.wiring.settings import CommonSettings

if TYPE_CHECKING:
    from clinic_backups.usecases.context import Services

JSON = "application/json"
# On every API response (see the module docstring).
API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

M = TypeVar("M", bound=BaseModel)

# The one error → HTTP map: each API error code (openapi.yaml `ErrorCode`, in its order) and
# the status it is answered with. The domain's errors know their code, never a status.
STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "invalid_cursor": 400,
    "missing_token": 401,
    "invalid_token": 401,
    "token_expired": 401,
    "forbidden": 403,
    "clinic_not_available": 403,
    "not_found": 404,
    "backup_not_found": 404,
    "restore_not_found": 404,
    "key_not_found": 404,
    "operation_in_progress": 409,
    "backup_not_completed": 409,
    "backup_purged": 409,
    "backup_not_cancellable": 409,
    "undo_not_available": 409,
    "encryption_key_required": 409,
    "key_already_registered": 409,
    "backup_file_missing": 410,
    "payload_too_large": 413,
    "validation_error": 422,
    "private_key_refused": 422,
    "quota_exceeded": 429,
    "internal_error": 500,
    "service_unavailable": 503,
    "verification_unavailable": 503,
}


def status_of(error: ApiError) -> int:
    return STATUS_BY_CODE[error.code]


def error_body(
    code: str, message: str, details: list[FieldProblem] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = [{"field": d.field, "message": d.message} for d in details]
    return {"error": error}


def error_response(error: ApiError) -> Response:
    return Response(
        status_code=status_of(error),
        content_type=JSON,
        body=json.dumps(error_body(error.code, error.message, error.details)),
    )


def _internal(message: str = "Unexpected error; it has been logged.") -> Response:
    return Response(
        status_code=500, content_type=JSON, body=json.dumps(error_body("internal_error", message))
    )


def json_response(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=JSON, body=json.dumps(body))


def no_content() -> Response:
    return Response(status_code=204, content_type=None, body="")


def register_error_handlers(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(ApiError)
    def _api_error(error: ApiError) -> Response:
        status = status_of(error)
        if status >= 500:
            logger.warning("request failed", extra={"error_code": error.code, "status": status})
        else:
            logger.info("request refused", extra={"error_code": error.code, "status": status})
        return error_response(error)

    @app.exception_handler(ConfigurationError)
    def _configuration(error: ConfigurationError) -> Response:
        # The message names fields and reasons only, never values.
        logger.error("configuration is invalid", extra={"problems": str(error)})
        return _internal("The service is misconfigured; it has been logged.")

    @app.exception_handler(ForeignKeyPrefix)
    def _foreign_key(error: ForeignKeyPrefix) -> Response:
        logger.error("a storage key outside the clinic prefix was refused")
        return _internal()

    @app.not_found
    def _not_found(error: NotFoundError) -> Response:
        return error_response(RouteNotFound())

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unexpected error")
        return _internal()


class _Resolver(APIGatewayHttpResolver):
    """The resolver, with the API's headers added to every answer it gives (routes, error
    handlers and its own not-found alike)."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        response: dict[str, Any] = super().resolve(event, context)
        headers = response.setdefault("headers", {})
        for name, value in API_HEADERS.items():
            headers.setdefault(name, value)
        if response.get("body") and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = JSON
        return response


def create_app() -> APIGatewayHttpResolver:
    app = _Resolver()
    register_error_handlers(app)
    return app


def use_tenant_auth(
    app: APIGatewayHttpResolver,
    settings: Callable[[], CommonSettings],
    services: Callable[[], Services],
) -> None:
    """Every route of `app` runs only for a verified caller, whose context it finds in
    `current_tenant(app)`. The clinic comes from the token alone.

    A token that verifies and names a real clinic but carries claims no user can have (NUL,
    unpaired surrogates, control characters, wrong types, huge values) is refused (401
    `invalid_token`) and the refusal is written to that clinic's audit, like every other
    refusal of a signed-in request — naming the claims, never their values."""

    def middleware(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        request_id = app.current_event.request_context.request_id
        logger.append_keys(request_id=request_id)
        try:
            ctx = authenticate(
                app.current_event.headers, settings(), services().tenants, request_id
            )
        except InvalidClaims as refused:
            if refused.schema is not None:
                _audit_refused_claims(services(), refused, request_id)
            raise
        logger.append_keys(clinic=ctx.schema, role=ctx.role.value)
        app.append_context(tenant=ctx)
        return next_middleware(app)

    app.use(middlewares=[middleware])


def _audit_refused_claims(svc: Services, refused: InvalidClaims, request_id: str | None) -> None:
    assert refused.schema is not None
    try:
        svc.records.ensure_schema(refused.schema)
        svc.records.audit(
            refused.schema,
            AuditEntry(
                action="auth.token",
                outcome="refused",
                actor_id=None,
                request_id=request_id,
                details={"reason": "invalid_claims", "claims": sorted(refused.claims)},
            ),
        )
    except ApiError as error:
        # The answer stays the 401; the log says the audit could not be written.
        logger.warning("could not audit a refused token", extra={"error_code": error.code})


def current_tenant(app: APIGatewayHttpResolver) -> TenantContext:
    ctx = app.context.get("tenant")
    assert isinstance(ctx, TenantContext), "route reached without authentication"
    return ctx


def _problems(error: ValidationError) -> list[FieldProblem]:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in item["loc"]) or "body"
        problems.append(FieldProblem(field=field, message=item["msg"]))
    return problems


def parse_body(app: APIGatewayHttpResolver, model: type[M]) -> M:
    """The JSON body as `model`, after `inputs.read_json_body` read and screened it: size,
    UTF-8, nesting and number limits, a private key anywhere (refused before anything could
    store or echo it), NUL and unpaired surrogates."""
    event = app.current_event
    data = read_json_body(event.get("body"), bool(event.get("isBase64Encoded")))
    if not isinstance(data, dict):
        raise ValidationFailed(details=[FieldProblem("body", "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(details=_problems(error)) from None


def parse_query(app: APIGatewayHttpResolver, model: type[M]) -> M:
    params = app.current_event.query_string_parameters or {}
    try:
        return model.model_validate(params)
    except ValidationError as error:
        raise ValidationFailed(details=_problems(error)) from None


def is_http_event(event: Any) -> bool:
    """An API Gateway HTTP API (payload v2) event: only these reach the routes, and job
    handling never looks at them."""
    return (
        isinstance(event, dict)
        and isinstance(event.get("requestContext"), dict)
        and ("http" in event["requestContext"])
    )
