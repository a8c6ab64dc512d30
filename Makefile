# The two commands of the README:
#   make demo   set up, build the demo models, evaluate them, open the dashboard
#   make test   set up (incl. Chromium, PostgreSQL, Unsloth venv) and run every test
.PHONY: setup demo test dashboard bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/python -m evaluator demo

dashboard: setup
	.venv/bin/streamlit run dashboard/app.py

test:
	bash scripts/setup.sh --tests
	bash scripts/test.sh

bench: setup
	.venv/bin/python benchmarks/bench_store.py --runs 3 --examples 20000
	.venv/bin/python benchmarks/bench_score.py --n 1000
	.venv/bin/python benchmarks/bench_generate.py
	.venv/bin/python benchmarks/bench_parallel.py
	.venv/bin/python benchmarks/bench_dashboard.py
