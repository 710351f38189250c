# Quick start: `make run` (embedded default: one process, SQLite, no Kafka) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: setup model run test test-fast test-all bench bench-quality cv-quality learning-curve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)

## the bundled Jinshan model, trained from the project's own corpus (seconds; skipped when current)
model: setup
	$(BIN)/hotline build-model

run: model
	$(BIN)/hotline run

## everything; tests needing Kafka/PostgreSQL skip outside CI when those are not running
test: model
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 0; exit $$rc

## the fast tier: unit tests only
test-fast: model
	$(BIN)/python -m pytest -m "not integration and not slow" $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 0; exit $$rc

test-all: test

bench: model
	$(BIN)/python -m ops.bench

bench-quality: setup
	$(BIN)/python -m ops.bench_quality

## repeated cross-validation of model variants on the Haikou train + validation orders (minutes)
cv-quality: setup
	$(BIN)/python -m ops.cv_quality --variant current --variant previous --variant industry-1.0 \
		--variant plain-mentions --variant industry-0.5 --variant knn-0.1 --variant direct-0.2

## learning curve of the unit model over training size (Haikou train + validation; minutes)
learning-curve: setup
	$(BIN)/python -m ops.learning_curve --shuffles 0,1,2,3

clean:
	rm -rf $(VENV) var classifier/bundled .pytest_cache
