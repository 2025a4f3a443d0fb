"""Cold start of one function in a fresh interpreter: import the handler and serve its first
request (the same event files `sam local invoke` uses). Prints one JSON line with the wall
time of import + first invocation, and the status. With `"app"` it runs that app.py (a built
function) instead of the source tree's. With `{"baseline": true}` it measures the
naive start instead: import supabase and create its client, create powertools' Tracer() and a
boto3 client."""

from __future__ import annotations

import json
import sys
import time

START = time.perf_counter()


def naive() -> dict:
    import boto3
    from aws_lambda_powertools import Tracer
    from supabase import create_client

    create_client(PAYLOAD["supabase_url"], PAYLOAD["supabase_key"])
    Tracer(service="naive")
    boto3.client("s3", region_name="eu-west-1")
    return {"seconds": time.perf_counter() - START, "status": 0}


def function() -> dict:
    import importlib.util

    # "app": the built function's app.py (the sam build output, its folder and the layer's
    # python/ on PYTHONPATH); else the source tree's, on the venv.
    app = PAYLOAD.get("app") or f"functions/{PAYLOAD['function']}/app.py"
    spec = importlib.util.spec_from_file_location("app", app)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = type(
        "Ctx",
        (),
        {
            "function_name": PAYLOAD["function"],
            "memory_limit_in_mb": 256,
            "invoked_function_arn": "arn:aws:lambda:eu-west-1:1:function:f",
            "aws_request_id": "cold",
        },
    )()
    answer = module.lambda_handler(PAYLOAD["event"], context)
    return {"seconds": time.perf_counter() - START, "status": answer["statusCode"]}


PAYLOAD = json.loads(sys.stdin.read())
print(json.dumps(naive() if PAYLOAD.get("baseline") else function()))
