# Every recipe is one obvious command; `make help` lists them.
.PHONY: help build run test test-valkey lint fmt bench crd chart-lint docker fuzz fuzz-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

build: ## release binary at target/release/ceryx
	cargo build --release --locked

run: ## proxy on :8080, API on 127.0.0.1:5555 (in-memory routes unless CERYX_REDIS_* is set)
	cargo run --release --locked -- run

test: ## a smoke run of the benchmark, then all tests (installs redis-server, nginx and its Lua module, haproxy, wrk, h2load, helm if missing; builds the test control plane once if Go is there)
	bash scripts/test-deps
	@if command -v go >/dev/null; then bash scripts/kube-testenv build >/dev/null; \
	else echo "Go not found: the Kubernetes tests will be skipped (see README)"; fi
	bash bench/run --smoke
	cargo test --locked

test-valkey: ## the Redis tests (store, API, outages, Sentinel failover) on Valkey instead of Redis (fetches a Valkey binary into .tools/)
	bash scripts/valkey >/dev/null
	CERYX_TEST_REDIS_SERVER=$(CURDIR)/.tools/valkey-server CERYX_TEST_REDIS_SENTINEL=$(CURDIR)/.tools/valkey-sentinel \
		cargo test --locked --test store --test api --test reliability --test replicas --test sentinel \
		-- --skip a_route_created_through_the_api_is_served_by_another_proxy_on_the_next_request

bench: ## Ceryx beside nginx, HAProxy and a model of the original Ceryx on this machine; prints the table of docs/benchmarks.md
	bash bench/run

lint: ## formatting and clippy, warnings are errors
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

FUZZ_SECONDS ?= 60
FUZZ_TARGETS = normalize_host api_route_json redis_route

fuzz: ## each fuzz target in turn for FUZZ_SECONDS (default 60; needs nightly, installs cargo-fuzz)
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		echo "== $$t ($(FUZZ_SECONDS) s)"; \
		cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

fuzz-check: ## type-check the fuzz targets (any toolchain; what CI runs)
	cargo check --locked --manifest-path fuzz/Cargo.toml --bins

crd: ## regenerate crds/ceryxroute.yaml from the Rust types
	cargo run --locked -q -- crd > crds/ceryxroute.yaml
	cp crds/ceryxroute.yaml charts/ceryx/crds/ceryxroute.yaml

chart-lint: ## helm lint of charts/ceryx, with default and production-like values
	bash scripts/helm lint charts/ceryx
	bash scripts/helm lint charts/ceryx -f charts/ceryx/ci/production-values.yaml

docker: ## container image ceryx:dev (needs a Docker engine)
	docker build -t ceryx:dev .

fmt: ## format the code
	cargo fmt
