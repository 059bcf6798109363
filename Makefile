# The two commands a newcomer needs:
#   make run    install into .venv and serve the chat on http://127.0.0.1:5000
#   make test   install the test extras into .venv and run the whole suite (SQLite, then PostgreSQL + Redis)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint serve bench clean translations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/flask --app chatbot run --host $(HOST) --port $(PORT)

# The whole suite twice: on SQLite, then on PostgreSQL + Redis (skipped with a reason without them).
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	CHATBOT_TEST_STACK=postgres $(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint, format check and types (CI runs this before the tests).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Production-style serving (gevent workers: hundreds of concurrent streams each).
serve: $(VENV)/.installed-run
	$(BIN)/flask --app chatbot db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

bench: $(VENV)/.installed-test
	$(BIN)/python bench/stream_latency.py
	$(BIN)/python bench/turn_overhead.py
	$(BIN)/python bench/stream_markdown.py

clean:
	rm -rf $(VENV) .pytest_cache

# After changing marked strings: refresh the catalog template and the Spanish catalog (then
# translate the new entries in chatbot/translations/es/LC_MESSAGES/messages.po).
translations: $(VENV)/.installed-run
	$(BIN)/pybabel extract -F babel.cfg -k _l -k N_ --sort-output --add-location=file \
		-o chatbot/translations/messages.pot .
	$(BIN)/pybabel update -i chatbot/translations/messages.pot -d chatbot/translations \
		--no-fuzzy-matching --width 110
