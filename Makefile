# The two commands of the README: `make up` and `make test`. Everything else is a convenience.
PYTHON ?= python
ORCHARD := $(PYTHON) -m deploy.cli
INSTALL_STAMP := var/.installed

.PHONY: install up down status test lint bench bench-messaging schemas image docs

# Reinstall only when this checkout is not the installed one or pyproject.toml changed since.
install:
	@bash deploy/install-system-deps.sh
	@if [ ! -f $(INSTALL_STAMP) ] || [ pyproject.toml -nt $(INSTALL_STAMP) ] || \
	   ! (cd / && $(PYTHON) -c "import pathlib, sys, deploy; \
	      sys.exit(pathlib.Path(deploy.__file__).resolve().parents[1] != pathlib.Path('$(CURDIR)'))" 2>/dev/null); then \
		echo "Installing Orchard and its dev tools: pip install -e '.[dev]'"; \
		PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install -q -e '.[dev]' && mkdir -p var && touch $(INSTALL_STAMP); \
	fi
	@# pyenv finds a newly installed command (`orchard`) only after a rehash of its shims.
	@if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi

up: install
	@$(ORCHARD) up

down:
	@$(ORCHARD) down

status:
	@$(ORCHARD) status

# pytest's exit code 5 (no tests collected) fails the target like any other non-zero code.
test:
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The whole-system fault suite (tests/faults): each scenario under a burst of ORCHARD_FAULT_BURST records.
faults:
	$(PYTHON) -m pytest tests/faults -m fault $(PYTEST_ARGS)

# The same scenarios as a soak: longer bursts (override ORCHARD_FAULT_BURST / _SECONDS), no per-test timeout.
soak:
	ORCHARD_FAULT_BURST=$${ORCHARD_FAULT_BURST:-3000} ORCHARD_FAULT_BURST_SECONDS=$${ORCHARD_FAULT_BURST_SECONDS:-60} \
		$(PYTHON) -m pytest tests/faults -m fault -p no:cacheprovider --timeout=0 $(PYTEST_ARGS)

lint:
	ruff check .
	ruff format --check .
	mypy
	lint-imports

# The whole-pipeline bench on a system of its own (BENCH_ARGS="--quick", "--use-running", …; see
# bench/README.md). `make bench-messaging` is the messaging layer's own bench.
bench: install
	$(PYTHON) -m bench.pipeline $(BENCH_ARGS)
	$(PYTHON) -m bench.tracing $(TRACING_BENCH_ARGS)

bench-messaging: install
	$(PYTHON) -m bench $(BENCH_ARGS)

schemas: docs
	$(PYTHON) -m contracts.schemagen

# docs/contract.md from the topic registry, the services' routes and the CLI (a test checks it is current).
docs:
	$(PYTHON) -m deploy.contract_doc

# The service image (deploy/Dockerfile's runtime stage, without the local-only packages). Needs Docker.
image:
	docker build -f deploy/Dockerfile --target runtime -t orchard:local .

# The fuzz suite of `make test` (tests/fuzz) with more random examples per operation, without the per-test timeout.
.PHONY: fuzz
fuzz:
	ORCHARD_FUZZ_EXAMPLES=$${ORCHARD_FUZZ_EXAMPLES:-200} $(PYTHON) -m pytest tests/fuzz -m fuzz -p no:cacheprovider --timeout=0 $(PYTEST_ARGS)
