# phantom-authz — `make run` (quickstart with real Envoy) and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint unit e2e clean interop-deps bench protos wrk redis-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	# xds-protos ships an older copy of OpenTelemetry's protos over opentelemetry-proto's files (which one wins
	# depends on the install order); the OTLP exporters need opentelemetry-proto's own
	$(PY) -m pip install --force-reinstall --no-deps "opentelemetry-proto==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $(STAMP)

install: $(STAMP)

# `make run MODE=http`: Envoy's HTTP ext_authz mode (envoy/envoy-http.yaml, phantom-authz's HTTP transport on 9192);
# `make run PORTS=envoy=18000,dev-as=18443`: other ports (names: python -m devtools.quickstart --help)
MODE ?= grpc
PORTS ?=
run: $(STAMP)
	$(PY) -m devtools.quickstart --mode $(MODE)$(if $(PORTS), --ports $(PORTS))

# node oidc-provider for tests/interop: (re)installed when node_modules is missing or package-lock.json is newer.
INTEROP_DIR   := tests/interop/oidc_provider
INTEROP_STAMP := $(INTEROP_DIR)/node_modules/.installed

$(INTEROP_STAMP): $(INTEROP_DIR)/package-lock.json
	cd $(INTEROP_DIR) && npm ci --no-audit --no-fund
	touch $@

interop-deps: $(INTEROP_STAMP)

# Independent tests run side by side: TEST_WORKERS processes (pytest-xdist; TEST_WORKERS=0 runs them one by one),
# each test module on one worker (--dist loadscope) so a module's shared stack starts once.
TEST_WORKERS ?= 2
test: $(STAMP) interop-deps redis-server
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

e2e: $(STAMP)
	$(PY) -m pytest -q tests/e2e

# Benchmarks print figures; they assert nothing. `make bench BENCH_ARGS=--quick` is the CI smoke run;
# `make bench BENCH_ARGS="--baseline REF"` also runs c and ch as an A/B against commit REF (docs/performance.md).
BENCH_ARGS ?=
bench: $(STAMP) wrk
	$(PY) bench/envoy_bench.py $(BENCH_ARGS)
	$(PY) bench/cache_bench.py $(BENCH_ARGS)
	$(PY) bench/policy_bench.py $(BENCH_ARGS)
	$(PY) bench/dpop_bench.py $(BENCH_ARGS)

# Debian programs the tests and benchmarks run for real, installed when missing: redis-server (the cache's L2
# tier) and wrk (the load generator of bench/envoy_bench.py).
wrk redis-server:
	@command -v $@ >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends $@; }

# The admin API's generated code is committed; regenerate after editing protos/ (a test checks they match).
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/authz/adminpb/admin.proto

# The deployment recipes: deploy/recipes/<name>/rendered.yaml from the chart deploy/helm/phantom-authz and each
# recipe's values.yaml (Helm v4 embedded in helm-python-sdk; tests/deploy checks they are up to date).
.PHONY: recipes
recipes: $(STAMP)
	$(PY) -m tests.deploy.recipes

lint: $(STAMP)
	$(VENV)/bin/ruff check authz tests bench
	$(VENV)/bin/mypy authz

clean:
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache *.egg-info
