# The two commands of the README, and a few conveniences. Every target prepares
# what it needs itself (scripts/bootstrap.sh), so each works on a fresh machine.
.PHONY: run test lint bench bootstrap clean screenshots report

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

# The README's screenshots (docs/images/): the product runs as in `make run` while its own
# headless Chromium photographs the shop and the live view (about 3 minutes).
screenshots: bootstrap
	.venv/bin/python scripts/screenshots.py $(ARGS)

# The learning report: one self-contained HTML page from a simulator run (docs/DECISIONS.md).
report: bootstrap
	.venv/bin/tracker report $(ARGS)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

clean:
	rm -rf .venv var .pytest_cache .ruff_cache js-snippet/node_modules js-snippet/dist
