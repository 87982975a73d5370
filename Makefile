# MedTranslate — two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medtranslate-installed

.PHONY: setup data demo test benchmark clean

setup: $(STAMP)

# torch first (a pinned build: an open range would pull a multi-GB CUDA wheel), then the project.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

# Real MRI templates from PyPI (spm-runtime wheel, GPL-2; nilearn's MNI 2009a T1 and GM/WM maps, BSD-3) into .cache/data,
# for tests and training.
data: setup
	$(PY) Training/data/fetch_spm_templates.py > /dev/null
	$(PY) Training/data/fetch_mni2009_template.py > /dev/null

demo: setup
	$(VENV)/bin/medtranslate demo --out demo_output

test: setup data
	$(PY) -m pytest Testing

benchmark: setup data
	$(PY) -m pip install --quiet --disable-pip-version-check "monai==1.6.1"
	$(PY) Training/benchmarks/benchmark_translate.py
	$(PY) Training/benchmarks/benchmark_peak.py
	$(PY) Training/benchmarks/benchmark_precision.py
	$(PY) Training/benchmarks/benchmark_scale.py

clean:
	rm -rf demo_output .pytest_cache
