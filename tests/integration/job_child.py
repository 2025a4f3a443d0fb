"""Run one job message through a function's worker, as the Lambda runtime would, in this
process: `python -m tests.integration.job_child <function> '<job message JSON>'`. The
settings come from the environment the test process passes down. Prints the handler's answer.
"""

from __future__ import annotations

import json
import sys

from tests.helpers import invoke


def main() -> None:
    function, message = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(invoke(function, message)), flush=True)


if __name__ == "__main__":
    main()
