# The two commands of the README. Everything they do lives in scripts/ so it can be read.
.PHONY: demo test setup lint

demo:  ## set up and run the demo on the embedded default (SQLite, eager Celery)
	./scripts/demo.sh

test:  ## set up and run the whole test suite (embedded, then against PostgreSQL and Redis)
	./scripts/test.sh

setup:
	./scripts/setup.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/lint-imports
