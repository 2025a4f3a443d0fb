"""Send an event to a function of the running local stack, the way AWS would deliver it.

    python -m devstack.events schedule [--wait]          # EventBridge's scheduled event → scheduler
    python -m devstack.events invoke <function> [FILE]   # any JSON event (FILE, or stdin)

The event goes to the stack's gateway (``POST /__local/invoke/<function>``, loopback only),
which runs the function in-process with that event and answers like Lambda's Invoke API: the
function's return value, or ``{"errorMessage", "errorType", "stackTrace"}`` with the header
``X-Amz-Function-Error``. ``--wait`` also waits until the jobs the invocation queued have run.

The stack is found through ``<state>/stack.json`` (``--state-dir``, default ``<repo>/.local``)
or ``--url``. Exit status: 0 on success, 1 when the function failed or the stack is not
running, 2 when the function does not exist.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from devstack import paths

__all__ = ["invoke", "scheduled_event"]

REGION = "eu-west-1"
ACCOUNT = "123456789012"


def scheduled_event(rule: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """What an EventBridge schedule rule sends its target."""
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": moment.isoformat().replace("+00:00", "Z"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }


def _function_exists(folder: str) -> bool:
    return (paths.repo_root() / "functions" / folder / "app.py").is_file()


def _available() -> list[str]:
    return sorted(p.parent.name for p in (paths.repo_root() / "functions").glob("*/app.py"))


def _stack_url(args: argparse.Namespace) -> str | None:
    if args.url:
        return str(args.url).rstrip("/")
    from devstack.reaper import process_start_time
    from devstack.state import StateDir

    info = StateDir(args.state_dir).read_stack()
    if not info:
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or process_start_time(pid) != info.get("pid_start"):
        return None  # a stack.json left by a stack that died
    return str(info["url"])


def invoke(
    base_url: str, function: str, event: Any, *, wait_jobs: bool = False, timeout: float = 960.0
) -> tuple[Any, bool]:
    """POST the event to the gateway; returns (payload, function_failed)."""
    url = f"{base_url}/__local/invoke/{function}" + ("?wait=jobs" if wait_jobs else "")
    if not url.startswith(("http://", "https://")):
        raise ValueError("the stack's URL must be http(s)")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=json.dumps(event).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    # No proxies: the stack is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        payload = json.loads(response.read() or b"null")
        return payload, response.headers.get("X-Amz-Function-Error") is not None


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the stack's state folder (default <repo>/.local)",
    )
    common.add_argument("--url", default=None, help="the gateway's URL (instead of stack.json)")
    common.add_argument(
        "--wait",
        action="store_true",
        help="also wait until the jobs the invocation queued have run",
    )
    parser = argparse.ArgumentParser(
        prog="python -m devstack.events", description="Send an event to the running local stack."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    schedule = commands.add_parser(
        "schedule", parents=[common], help="EventBridge's scheduled event"
    )
    schedule.add_argument(
        "--function",
        default="scheduler",
        help="function folder under functions/ (default scheduler)",
    )
    generic = commands.add_parser("invoke", parents=[common], help="any JSON event to any function")
    generic.add_argument("function", help="function folder under functions/")
    generic.add_argument("event", nargs="?", default="-", help="JSON file (default: stdin)")
    args = parser.parse_args(argv)

    function = args.function
    if not _function_exists(function):
        hint = (
            " The scheduled backups function is not written yet; once "
            "functions/scheduler/app.py exists, this command sends it the EventBridge "
            "event."
            if args.command == "schedule"
            else ""
        )
        print(
            f"functions/{function}/app.py does not exist.{hint} "
            f"Functions you can invoke: {', '.join(_available())}.",
            file=sys.stderr,
        )
        return 2

    if args.command == "schedule":
        from devstack.template import load_template

        fn = load_template().functions.get(function)
        rule = fn.schedule_rules[0] if fn and fn.schedule_rules else f"{function}-schedule"
        event: Any = scheduled_event(rule)
    else:
        source = sys.stdin.read() if args.event == "-" else Path(args.event).read_text()
        try:
            event = json.loads(source)
        except ValueError as error:
            print(f"the event is not valid JSON: {error}", file=sys.stderr)
            return 2

    base_url = _stack_url(args)
    if base_url is None:
        print(
            "no local stack is running (start it with `make run`, or pass --url / --state-dir)",
            file=sys.stderr,
        )
        return 1
    try:
        payload, failed = invoke(base_url, function, event, wait_jobs=args.wait)
    except urllib.error.HTTPError as error:
        print(
            f"the gateway answered {error.code}: {error.read().decode(errors='replace')}",
            file=sys.stderr,
        )
        return 2 if error.code == 404 else 1
    except OSError as error:
        print(f"cannot reach the stack at {base_url}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(payload, indent=2, ensure_ascii=False))
    if failed:
        print(f"functions/{function} failed (X-Amz-Function-Error)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
