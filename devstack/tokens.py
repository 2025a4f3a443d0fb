"""Demo sign-in for the local stack: HS256 tokens for the demo users (PyJWT).

This is the only place in the repo that signs tokens outside the tests. It lives in devstack,
which is never deployed: nothing in shared/ or functions/ may import it (a test greps for
that). In production the tokens come from the platform's identity provider and the functions
only verify them.

Claims are the ones the functions read (see shared/clinic_backups/wiring/settings.py): ``sub``,
``name``, ``tenant`` (the clinic schema), ``clinic_role`` (admin | staff), ``iss``, ``aud``,
``exp``, ``iat``.

    python -m devstack.tokens --clinic clinica_demo --role admin   # prints one token

uses the JWT secret of the local stack's state folder (the running stack accepts it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jwt

from devstack import demo

__all__ = ["DEMO_AUDIENCE", "DEMO_ISSUER", "DEMO_TTL_SECONDS", "demo_accounts", "mint"]

# Fixed, so a token minted before a restart still verifies (the secret is kept per state folder).
DEMO_ISSUER = "https://auth.clinic-backups.local/"
DEMO_AUDIENCE = "clinic-backups"
DEMO_TTL_SECONDS = 8 * 3600


def mint(
    secret: str,
    *,
    sub: str,
    name: str | None,
    tenant: str,
    clinic_role: str,
    issuer: str = DEMO_ISSUER,
    audience: str = DEMO_AUDIENCE,
    ttl_seconds: int = DEMO_TTL_SECONDS,
    now: int | None = None,
) -> str:
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "sub": sub,
        "tenant": tenant,
        "clinic_role": clinic_role,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


def demo_accounts(
    secret: str,
    *,
    issuer: str = DEMO_ISSUER,
    audience: str = DEMO_AUDIENCE,
    ttl_seconds: int = DEMO_TTL_SECONDS,
) -> list[dict[str, str]]:
    """Every clinic and role of the demo, each with a fresh token (``GET /__demo/accounts``)."""
    now = int(time.time())
    return [
        {
            "clinic": user.clinic,
            "clinic_name": demo.clinic(user.clinic).name,
            "role": user.role,
            "user_name": user.name,
            "token": mint(
                secret,
                sub=user.sub,
                name=user.name,
                tenant=user.clinic,
                clinic_role=user.role,
                issuer=issuer,
                audience=audience,
                ttl_seconds=ttl_seconds,
                now=now,
            ),
        }
        for user in demo.USERS
    ]


def main(argv: list[str] | None = None) -> int:
    from devstack.state import StateDir

    parser = argparse.ArgumentParser(description="Print a demo token for the local stack.")
    parser.add_argument(
        "--clinic", default="clinica_demo", choices=[c.schema for c in demo.CLINICS]
    )
    parser.add_argument("--role", default="admin", choices=["admin", "staff"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the stack's state folder (default: <repo>/.local)",
    )
    parser.add_argument("--ttl", type=int, default=DEMO_TTL_SECONDS, help="seconds")
    args = parser.parse_args(argv)

    state = StateDir(args.state_dir)
    if not state.secrets_path.exists():
        print(f"no demo secret in {state.root}: start the stack once (make run)", file=sys.stderr)
        return 1
    user = next(u for u in demo.USERS if u.clinic == args.clinic and u.role == args.role)
    print(
        mint(
            state.secrets()["jwt_secret"],
            sub=user.sub,
            name=user.name,
            tenant=user.clinic,
            clinic_role=user.role,
            ttl_seconds=args.ttl,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
