# The course's entry points. `make course` runs everything; `make test` checks everything.
# Both create the virtual environment first (in .venv/, from constraints.txt) if needed.

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= fast
SEED    ?= 0
PIP_ARGS ?=
BIN     := $(VENV)/bin
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: setup course notebooks transfer book site-check gpu-check test unit nbval lint format strip lab clean clean-cache

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -c constraints.txt -e ".[dev]"
	touch $@

## The main job: execute every notebook (fast profile by default), write the report, build the site.
course: notebooks book
	@echo "Executed notebooks and the report (build/report.md) are in build/;"
	@echo "the course site is in book/_build/html/index.html."
	@echo "To work through the course interactively: make lab"

notebooks: setup
	$(OFFLINE) $(BIN)/python -m course_utils.runner --profile $(PROFILE) --seed $(SEED)

## The transfer benchmark (about 8 minutes per seed on 2 CPU cores): does pretraining pay off when the
## clinical classifier is fine-tuned? Run it before `make notebooks` and the report includes its table.
SEEDS ?= 0 1 2
transfer: setup
	$(OFFLINE) $(BIN)/python -m course_utils.transfer --profile $(PROFILE) --seeds $(SEEDS) --out build/transfer.json

## The site is built from the notebooks `make notebooks` executed; it never runs them itself.
book: setup
	$(BIN)/python -m tools.book

## Open every page of the built site in headless Chromium (needs the chromium package).
site-check: setup
	$(BIN)/python -m tools.site_check

## The GPU path in a few minutes (needs CUDA; without it, says so and exits 0). Never part of `make test`.
gpu-check: setup
	$(OFFLINE) $(BIN)/python -m course_utils.gpu_check

## Everything CI checks: lint and the unit tests. One of them executes every notebook once, in course
## order, with papermill (the runner), and builds and opens the site from those executions.
test: setup lint unit

unit: setup
	$(OFFLINE) $(BIN)/python -m pytest tests

## Execute the stored notebooks as they are, as Run All would, under nbval (NB= picks some).
NB ?= notebooks
nbval: setup
	$(OFFLINE) $(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider $(NB)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check course_utils tools tests

format: setup
	$(BIN)/ruff format course_utils tools tests
	$(BIN)/ruff check --fix .

## Remove outputs from notebooks before committing them.
strip: setup
	$(BIN)/jupyter nbconvert --clear-output --inplace --log-level=WARN notebooks/*.ipynb

lab: setup
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf build book/_build

clean-cache: setup
	$(BIN)/python -m course_utils.cache --clear
