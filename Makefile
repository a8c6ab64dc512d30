# The two commands of the README:
#   make demo   set up, build the demo models, evaluate them, open the dashboard
#   make test   set up (incl. Chromium, PostgreSQL, Unsloth venv) and run every test
# Tests never write tracked files; 'make screenshots' refreshes the README's docs/screenshots/.
.PHONY: setup demo test dashboard bench screenshots mutation

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/python -m evaluator demo

dashboard: setup
	.venv/bin/streamlit run dashboard/server.py

test:
	bash scripts/setup.sh --tests
	bash scripts/test.sh

bench: setup
	.venv/bin/python benchmarks/bench_store.py --runs 3 --examples 20000
	.venv/bin/python benchmarks/bench_score.py --n 1000
	.venv/bin/python benchmarks/bench_generate.py
	.venv/bin/python benchmarks/bench_parallel.py
	.venv/bin/python benchmarks/bench_dashboard.py

screenshots:
	bash scripts/setup.sh --tests
	HF_HUB_OFFLINE=1 ARTIFACTS_DIR=$(CURDIR)/artifacts .venv/bin/python -m pytest -q -p no:cacheprovider \
		tests/e2e/test_demo.py -k chromium
	cp artifacts/demo/*.png docs/screenshots/

# Mutation testing of the core (statistics, metrics, perplexity, dataset reading, resume, store queries):
# after any change to those modules; not part of 'make test'. See docs/mutation.md.
mutation: setup
	.venv/bin/python scripts/mutation.py
