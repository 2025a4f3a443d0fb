"""The first code an artifact container runs (``devstack.artifact``): Lambda's python3.12
bootstrap, reduced to what the function may see.

    python3.12 -I -S lambda_bootstrap.py <runtime dir> <handler> <code dir> [<layer python dir>…]

``-I -S`` leave ``sys.path`` holding the standard library only (no site-packages, no user site,
no ``PYTHON*`` variables, not even this script's folder). The runtime interface client
(awslambdaric, from ``<runtime dir>``) is imported with its folder on the path, which is then
taken off again: from then on the function's imports resolve from its code folder and its
layers' ``python/`` alone, as the layer must carry everything the code imports. awslambdaric
then imports the handler module as the runtime does (the template's ``Handler`` string) and
serves invocations from ``AWS_LAMBDA_RUNTIME_API`` until the process is stopped.

Standard library only: nothing of the repo's development environment is importable here.
"""

import os
import sys


def main() -> None:
    runtime_dir, handler, code_dir, *layer_dirs = sys.argv[1:]
    stdlib = list(sys.path)
    sys.path[:] = [runtime_dir, *stdlib]
    from awslambdaric import __main__ as runtime_interface_client

    sys.path[:] = [code_dir, *layer_dirs, *stdlib]
    os.chdir(code_dir)
    runtime_interface_client.main([sys.argv[0], handler])


if __name__ == "__main__":
    main()
