# The two commands of the README. Both create (or reuse) the cached virtual environment first.
.PHONY: demo test test-fast venv

venv:
	@scripts/venv.sh

demo:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/edgeskin" demo $(DEMO_ARGS)

test:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/python" -m pytest $(PYTEST_ARGS)

test-fast:
	@venv=$$(scripts/venv.sh) && "$$venv/bin/python" -m pytest -m "not slow" $(PYTEST_ARGS)
