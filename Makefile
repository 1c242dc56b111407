# Every recipe is one obvious command; `make help` lists them.
.PHONY: help build run test lint fmt

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## release binary at target/release/ceryx
	cargo build --release --locked

run: ## run proxy on :8080 (in-memory routes unless CERYX_REDIS_* is set)
	cargo run --release --locked -- run

test: ## all tests (installs redis-server first if missing and root)
	bash scripts/test-deps
	cargo test --locked

lint: ## formatting and clippy, warnings are errors
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

fmt: ## format the code
	cargo fmt
