"""encryption_keys: `GET/POST /encryption-keys`, `DELETE /encryption-keys/{id}` and
`POST /backups/{id}/reencrypt` (admins).

Only public keys are accepted; a pasted private key is refused before anything could store or
echo it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from clinic_backups.domain.models import RegisterKeyRequest
from clinic_backups.edge.api import (
    create_app,
    current_tenant,
    json_response,
    no_content,
    parse_body,
    use_tenant_auth,
)
from clinic_backups.observability import instrument, logger
from clinic_backups.usecases import keys, reencrypt
from clinic_backups.usecases.context import Services
from clinic_backups.wiring.factory import build_services
from clinic_backups.wiring.settings import EncryptionKeysSettings, get_settings


def settings() -> EncryptionKeysSettings:
    return get_settings(EncryptionKeysSettings)


@cache
def services() -> Services:
    return build_services(settings())


app = create_app()
use_tenant_auth(app, settings, services)


@app.get("/encryption-keys")
def list_keys() -> Any:
    found = keys.list_keys(services(), current_tenant(app))
    return json_response(200, {"items": [k.to_api() for k in found]})


@app.post("/encryption-keys")
def register_key() -> Any:
    request = parse_body(app, RegisterKeyRequest)
    key = keys.register_key(services(), current_tenant(app), request)
    return json_response(201, key.to_api())


@app.delete("/encryption-keys/<key_id>")
def remove_key(key_id: str) -> Any:
    keys.remove_key(services(), current_tenant(app), key_id)
    return no_content()


@app.post("/backups/<backup_id>/reencrypt")
def reencrypt_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    record = reencrypt.request_reencrypt(services(), current_tenant(app), backup_id)
    return json_response(202, record.to_api())


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    return app.resolve(event, context)
