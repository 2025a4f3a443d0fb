"""encryption_keys: `GET/POST /encryption-keys`, `DELETE /encryption-keys/{id}` and
`POST /backups/{id}/reencrypt` (admins).

Only public keys are accepted; a pasted private key is refused before anything could store or
echo it.
"""

from __future__ import annotations

from typing import Any

from clinic_backups.domain.models import RegisterKeyRequest
from clinic_backups.edge.api import json_response, no_content
from clinic_backups.edge.app import function_app
from clinic_backups.edge.responses import backup_to_api, key_to_api, keys_to_api
from clinic_backups.observability import logger
from clinic_backups.usecases import keys, reencrypt
from clinic_backups.wiring.settings import EncryptionKeysSettings

fn = function_app(EncryptionKeysSettings)
lambda_handler = fn.lambda_handler


@fn.app.get("/encryption-keys")
def list_keys() -> Any:
    return json_response(200, keys_to_api(keys.list_keys(fn.services(), fn.tenant())))


@fn.app.post("/encryption-keys")
def register_key() -> Any:
    key = keys.register_key(fn.services(), fn.tenant(), fn.body(RegisterKeyRequest))
    return json_response(201, key_to_api(key))


@fn.app.delete("/encryption-keys/<key_id>")
def remove_key(key_id: str) -> Any:
    keys.remove_key(fn.services(), fn.tenant(), key_id)
    return no_content()


@fn.app.post("/backups/<backup_id>/reencrypt")
def reencrypt_backup(backup_id: str) -> Any:
    logger.append_keys(backup_id=backup_id)
    record = reencrypt.request_reencrypt(fn.services(), fn.tenant(), backup_id)
    return json_response(202, backup_to_api(record))
