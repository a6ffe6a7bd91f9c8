# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow demo bench summary clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision first, pinned: on this machine they come from local disk
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test,onnx]'
	touch $(STAMP)

install: $(STAMP)

# PYTHONDONTWRITEBYTECODE emptied: where the environment sets it, every run recompiled our modules
# and pytest re-rewrote the asserts of 180 test modules (4-5 s of collection, and again in each
# subprocess a test starts); __pycache__/ is ignored by git
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(VENV)/bin/detect examples/BloodImage_00007.jpg --out demo_out --json demo_out/detections.json --overwrite

bench: $(STAMP)
	$(PY) bench/run.py

summary: $(STAMP)
	$(VENV)/bin/model-summary

clean:
	rm -rf demo_out build *.egg-info
