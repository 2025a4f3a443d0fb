# The single entry point: the README's two commands are `make run` and `make test`; CI calls
# `make test` too. Every target installs what it needs (idempotent, fast the second time).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
NPM_STAMP := frontend/node_modules/.installed-$(shell cat frontend/package-lock.json 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: help token venv layer pg-server lambda-runtime frontend-deps frontend system-deps bench-deps run schedule \
        test test-python unit test-frontend test-e2e lint build validate bench bench-smoke clean

help:
	@echo "make run        run the whole product locally (embedded PostgreSQL, SeaweedFS, UI)"
	@echo "make test       every test: unit, integration, local stack, UI unit and browser e2e"
	@echo "make unit       the fast tier in seconds: use cases against in-memory fakes, pure unit tests"
	@echo "make lint       ruff, the import contract, mypy, cfn-lint, sam validate --lint"
	@echo "make build      sam build (no Docker needed)"
	@echo "make run ARGS=--artifact   the local stack running the sam build output (what deploys)"
	@echo "make bench      benchmarks (minutes); make bench-smoke runs them in seconds"
	@echo "make schedule   send the hourly EventBridge event to the local stack's scheduler"

# --- environment ------------------------------------------------------------------------

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

layer:
	$(MAKE) -C layers/pgdump layer

pg-server:
	$(MAKE) -C layers/pgdump pg-server

# The Lambda runtime interface client (awslambdaric, cp312 wheels) the artifact harness runs
# the built functions with: the runtime's, not the product's, so never in a layer.
LAMBDA_RUNTIME := .build/lambda-runtime
$(LAMBDA_RUNTIME)/.installed: devstack/lambda-runtime.txt | $(STAMP)
	rm -rf $(LAMBDA_RUNTIME)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
		--platform manylinux2014_x86_64 --target $(LAMBDA_RUNTIME) -r devstack/lambda-runtime.txt
	@touch $@

lambda-runtime: $(LAMBDA_RUNTIME)/.installed

$(NPM_STAMP): frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	@rm -f frontend/node_modules/.installed-* && touch $@

frontend-deps: $(NPM_STAMP)

FRONTEND_SOURCES := $(shell find frontend/src frontend/public frontend/index.html frontend/vite.config.ts frontend/package.json -type f 2>/dev/null)

frontend/dist/index.html: $(NPM_STAMP) $(FRONTEND_SOURCES)
	cd frontend && npm run build --silent

frontend: frontend/dist/index.html

# Debian's Chromium for the browser tests (never `npx playwright install`: no such download
# here) and Debian's age, the real CLI a clinic opens its downloads with.
system-deps:
	@missing=""; for tool in chromium age; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "install$$missing (apt-get install$$missing) for the tests"; exit 1; fi; \
	fi

# --- the two README commands -----------------------------------------------------------------

# ARGS=--artifact serves the functions from the sam build output (devstack/artifact.py).
run: venv layer pg-server frontend $(if $(findstring --artifact,$(ARGS)),build lambda-runtime)
	$(PY) -m devstack.run $(ARGS)

test: venv layer pg-server lambda-runtime frontend system-deps
	$(PY) -m pytest tests -q -p no:cacheprovider
	cd frontend && npm test --silent
	@# the browser e2e against the fake API too: the flows the seeded stack has no data for
	@# (a backup only the platform opens: the one-flow first download), axe on every dialog
	cd frontend && npm run e2e:local --silent

test-python: venv layer pg-server lambda-runtime
	$(PY) -m pytest tests -q -p no:cacheprovider -m "not e2e"

# The fast tier: every use case against the in-memory fakes (tests/usecases) and the pure unit
# tests, with no PostgreSQL, S3 server, moto or layer binaries. The template's cfn-lint run (a
# tool, seconds on its own) stays in `make test` and `make lint`.
unit: venv
	$(PY) -m pytest tests/usecases tests/unit -q -p no:cacheprovider \
		--deselect tests/unit/test_contracts.py::test_cfn_lint_is_clean

test-frontend: frontend-deps
	cd frontend && npm test --silent

test-e2e: venv layer pg-server frontend system-deps
	$(PY) -m pytest tests/e2e -q -p no:cacheprovider

schedule: venv
	$(PY) -m devstack.events schedule --wait

# A demo token for `sam local invoke` or curl against the local stack (CLINIC=…, ROLE=admin|staff).
token: venv
	@$(PY) -m devstack.tokens --clinic $(or $(CLINIC),clinica_demo) --role $(or $(ROLE),admin)

# --- quality and deployment ------------------------------------------------------------------

lint: venv frontend-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# the one-way rooms of the layer (.importlinter: the architecture in one page)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy shared/clinic_backups devstack bench tests
	@# every function is an app.py of its own: one mypy run each
	@for f in functions/*/app.py; do $(VENV)/bin/mypy --no-error-summary $$f || exit 1; done
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint
	cd frontend && npm run typecheck --silent

# SAM builds the functions and the SharedLayer for python3.12: pyenv's 3.12 must be on PATH
# next to the 3.11 venv (BRIEF). PgDumpLayer is built by layers/pgdump/Makefile.
# sam build ships sources only, and Lambda's /opt and /var/task are read-only: without the
# bytecode every cold start compiles every module it imports (measured: list_backups' imports
# from the built layer 0.65-0.83 s without it, 0.25-0.38 s with it). The build compiles it with
# the runtime's python3.12, hash-checked (PEP 552: valid whatever mtimes the zip keeps, and a
# changed source is never run from a stale .pyc).
build: venv
	@if ! python3.12 -c pass >/dev/null 2>&1 && command -v pyenv >/dev/null; then \
		export PYENV_VERSION="$$(pyenv version-name):$$(pyenv versions --bare | grep -E '^3\.12(\.|$$)' | tail -1)"; \
	fi; \
	python3.12 -c pass || { echo "sam build needs python3.12 on PATH"; exit 1; }; \
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/sam build && \
	python3.12 -m compileall -q -j0 --invalidation-mode checked-hash .aws-sam/build >/dev/null

validate: venv
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint

# The peers section's tools: django-dbbackup (PyPI, bench only) and Debian's gpg.
BENCH_STAMP := $(VENV)/.bench-$(shell cat bench/requirements.txt | sha1sum | cut -c1-12)
$(BENCH_STAMP): bench/requirements.txt | $(STAMP)
	$(PY) -m pip install --quiet -r bench/requirements.txt
	@rm -f $(VENV)/.bench-* && touch $@

bench-deps: $(BENCH_STAMP)
	@command -v gpg >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnupg >/dev/null; \
		else echo "install gpg (apt-get install gnupg) for the bench"; exit 1; fi; }

bench: venv layer pg-server bench-deps
	$(PY) -m bench.run $(ARGS)

bench-smoke: venv layer pg-server bench-deps
	$(PY) -m bench.run --smoke

clean:
	rm -rf .aws-sam .build frontend/dist
