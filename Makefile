# Common tasks; each is a script under scripts/ that also works without make.
.PHONY: serve test lint ci gpu migrate

serve:  ## the whole service on the embedded default (SQLite + embedded Redis)
	bash scripts/serve.sh

test:  ## the whole test suite (ARGS="-k something" to select)
	bash scripts/test.sh $(ARGS)

lint:  ## ruff over the whole tree
	bash scripts/lint.sh

ci:  ## what CI runs: lint and the whole suite against this machine's PostgreSQL and Redis
	CI=true bash .ci/run

gpu:  ## GPU tests and benchmarks (on a CUDA machine)
	bash scripts/gpu_check.sh

migrate:  ## alembic upgrade head on DATABASE_URL (SQLite in .trainyard by default)
	.venv/bin/trainyard migrate
