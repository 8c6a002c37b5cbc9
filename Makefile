# The two commands of the README, and a few conveniences. Every target prepares
# what it needs itself (scripts/bootstrap.sh), so each works on a fresh machine.
.PHONY: run test lint bench bootstrap clean

bootstrap:
	@scripts/bootstrap.sh

# Run the product on the embedded local stack (Ctrl-C stops everything).
run: bootstrap
	.venv/bin/tracker up $(ARGS)

# The whole test suite: lint, unit, integration (real Kafka and Redis), doctests;
# the snippet's type check and unit tests (vitest), its browser tests run in pytest.
test: bootstrap
	.venv/bin/ruff check .
	cd js-snippet && npm test
	.venv/bin/python -m pytest $(ARGS)

# Speed and memory figures for docs/BENCHMARKS.md (never asserted in tests).
bench: bootstrap
	.venv/bin/python bench/run_all.py

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

clean:
	rm -rf .venv var .pytest_cache .ruff_cache js-snippet/node_modules js-snippet/dist
