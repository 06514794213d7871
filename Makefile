# Two commands set everything up on a fresh machine:
#   make demo   - create .venv if needed, install convrec, run the demo on the example store
#   make test   - the same set-up, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.convrec-installed

.PHONY: install demo test test-all lint bench bench-all clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is a CPU wheel; an unpinned torch pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/convrec demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-all: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m ""

lint: install
	$(BIN)/ruff check --output-format concise .

# Benchmarks print a table and write JSON to $(OUT). DATA: the shared real data sets (never
# copied into the repository: their terms forbid redistribution).
DATA ?= ../shared/data
OUT  ?= runs
bench: install
	mkdir -p $(OUT)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/ingest.py --out $(OUT)/ingest.json
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/encode_throughput.py --json $(OUT)/encode.json
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/adapter_latency.py --json $(OUT)/adapters.json
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/faq.py --kb $(DATA)/covid-faq/faq_covidbert.csv \
		--queries benchmarks/data/faq_dev_queries.jsonl --out $(OUT)/faq.json
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/faq.py --kb $(DATA)/covid-faq/faq_covidbert.csv \
		--queries benchmarks/data/faq_fresh_queries.jsonl --variant default \
		--out $(OUT)/faq_fresh.json
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/faq.py --kb $(DATA)/covid-faq/faq_covidbert.csv \
		--queries benchmarks/data/faq_fresh2_queries.jsonl --variant default \
		--out $(OUT)/faq_fresh2.json

# The long ones: ReDial (~10 min) and MovieLens-1M (about 30 min per neural model on 2 cores).
bench-all: bench
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/redial.py \
		--split-dev $(DATA)/redial/kgsf_valid_data.jsonl \
		--movies $(DATA)/redial/movies_with_mentions.csv --movielens $(DATA)/movielens-1m \
		--sequence-model --out $(OUT)/redial.json
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/movielens.py --data $(DATA)/movielens-1m \
		--out $(OUT)/movielens.json

clean:
	rm -rf $(VENV) .convrec .pytest_cache .ruff_cache
