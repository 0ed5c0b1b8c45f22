# ext4kit: make demo | make test | make bench | make lint
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v mke2fs >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq e2fsprogs)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the crash report render test will skip"
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	$(VPY) -m compileall -q src
	@touch $(STAMP)

demo: setup
	$(VPY) -m ext4kit.demo

test: setup
	$(VPY) -m pytest -q

bench: setup
	@# bytecode as an installed tool has it (this environment may set PYTHONDONTWRITEBYTECODE)
	$(VPY) -m compileall -q src
	$(VPY) benchmarks/run.py

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
