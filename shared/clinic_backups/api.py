"""HTTP plumbing shared by every function: the resolver, authentication, request parsing,
and the single mapping of errors to HTTP responses.

Client errors (4xx) are logged at info without a stack trace; only 5xx gets
`logger.exception`. No response or log line carries a token, claims, a connection string or a
signed URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from pydantic import BaseModel, ValidationError

from .auth import authenticate
from .errors import (
    ApiError,
    BadRequest,
    ConfigurationError,
    FieldProblem,
    ForeignKeyPrefix,
    PayloadTooLarge,
    RouteNotFound,
    ValidationFailed,
)
from .models import TenantContext
from .observability import logger
from .ports import TenantDirectory
from .settings import CommonSettings

MAX_BODY_BYTES = 16 * 1024
JSON = "application/json"

M = TypeVar("M", bound=BaseModel)


def error_body(
    code: str, message: str, details: list[FieldProblem] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = [{"field": d.field, "message": d.message} for d in details]
    return {"error": error}


def error_response(error: ApiError) -> Response:
    return Response(
        status_code=error.status,
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
        if error.status >= 500:
            logger.warning(
                "request failed", extra={"error_code": error.code, "status": error.status}
            )
        else:
            logger.info("request refused", extra={"error_code": error.code, "status": error.status})
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


def create_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()
    register_error_handlers(app)
    return app


def use_tenant_auth(
    app: APIGatewayHttpResolver,
    settings: Callable[[], CommonSettings],
    tenants: Callable[[], TenantDirectory],
) -> None:
    """Every route of `app` runs only for a verified caller, whose context it finds in
    `current_tenant(app)`. The clinic comes from the token alone."""

    def middleware(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        request_id = app.current_event.request_context.request_id
        logger.append_keys(request_id=request_id)
        ctx = authenticate(app.current_event.headers, settings(), tenants(), request_id)
        logger.append_keys(clinic=ctx.schema, role=ctx.role.value)
        app.append_context(tenant=ctx)
        return next_middleware(app)

    app.use(middlewares=[middleware])


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


def parse_body(
    app: APIGatewayHttpResolver, model: type[M], screen: Callable[[str], None] | None = None
) -> M:
    """The JSON body as `model`. `screen` sees the raw text first (e.g. to refuse a private
    key wherever it was pasted, before anything could echo it)."""
    raw = app.current_event.decoded_body or ""
    if len(raw.encode()) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    if screen is not None:
        screen(raw)
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise BadRequest("The body is not valid JSON.") from None
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
