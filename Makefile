# padnet — the two commands a new machine needs are `make run` and `make test`.
CARGO ?= cargo
BIN := target/release

.PHONY: build run test bench lint fuzz clean-run

build:
	$(CARGO) build --release --workspace --bins

## run: a demo site, a gateway, a demo pad and an agent on 127.0.0.1:8080, ready for a browser
run: build
	scripts/run-demo.sh

## test: unit, property and end-to-end tests (real processes, real curl)
test:
	scripts/test.sh

## bench: direct vs shadowsocks-rust vs padnet, runs interleaved: bulk MB/s, 1 KiB req/s
## and latency over HTTP and HTTPS (CONNECT), CPU per GB and per request, page loads of a
## 100-resource page in headless Chromium; pad use, the pad cached vs cold; metered vs free;
## ledger settlements/s (group commit; redb and PostgreSQL); 1 KiB req/s through one and two gateways
## on one PostgreSQL ledger; policy decisions/s. The first run builds
## shadowsocks-rust into .bench-tools/ (scripts/ensure-bench-tools.sh).
bench: build
	scripts/ensure-tools.sh
	scripts/ensure-bench-tools.sh
	PADNET_BIN_DIR=$(CURDIR)/$(BIN) $(BIN)/padnet-bench
	$(CARGO) bench -p padnet-gateway --bench ledger
	scripts/with-postgres.sh env PADNET_LEDGER_STORE=postgres $(CARGO) bench -p padnet-gateway --bench ledger
	$(CARGO) bench -p padnet-policy --bench decide

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 scripts/check-cycles.py

## fuzz: AFL++ on stable, every target FUZZ_SECONDS (default 60) from its kept corpus;
## prints execs and crashes per target (see docs/operations.md)
fuzz:
	scripts/fuzz.sh

clean-run:
	rm -rf run
