"""The GPU check (scripts/gpu_check.sh, benchmarks/gpu_check.py) on CPU: ``--dry-run`` runs every step with
a tiny model, so the script that a short window on a GPU machine depends on cannot rot; and the wheels
that travel there (scripts/gpu_wheels.sh) fit the budget and suit Python 3.12 on x86_64 Linux."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from benchmarks.gpu_check import PPL_REL_TOL, STEPS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dry_run(demo_models, demo_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = dict(os.environ, EVALBENCH_CACHE=str(demo_cache), HF_HUB_OFFLINE="1", PYTHON=sys.executable)
    env.pop("OUT", None)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    return proc, out


def test_the_dry_run_passes_every_step_and_writes_one_json_and_a_log(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed == json.loads((out / "gpu_check.json").read_text())
    assert printed["dry_run"] is True and printed["gpu"] is None and printed["ok"] is True
    assert list(printed["steps"]) == list(STEPS)
    log = (out / "gpu_check.log").read_text()
    assert all(f"--- {name}: " in log for name in STEPS)


def test_the_dry_run_model_has_the_8b_family_shape_and_generate_reports_its_batch(dry_run):
    steps = json.loads((dry_run[1] / "gpu_check.json").read_text())["steps"]
    assert steps["model"]["shape"] == "tiny" and steps["model"]["parameters"] > 0
    gen = steps["generate"]
    assert gen["outputs_identical"] is True and gen["batch_size"] == gen["prompts"] == 16
    assert gen["evaluator_tokens_per_s"] > 0 and gen["roofline_goal_met"] is None  # no bandwidth on CPU


def test_backoff_halves_twice_and_keeps_every_output(dry_run):
    step = json.loads((dry_run[1] / "gpu_check.json").read_text())["steps"]["backoff"]
    assert step["simulated_oom"] is True  # no GPU memory to cap here: batches above 16 raise the CUDA OOM error
    assert step["batch_sizes_tried"] == [64, 32, 16] and step["halvings"] == 2
    assert step["identical_outputs"] == step["prompts"] == 64


def test_unsloth_step_says_why_it_did_not_run_where_unsloth_is_absent(dry_run):
    step = json.loads((dry_run[1] / "gpu_check.json").read_text())["steps"]["unsloth"]
    if importlib.util.find_spec("unsloth") is None:  # the main suite's venv (the Unsloth suite runs it for real)
        assert step["status"] == "unavailable" and "No module named 'unsloth'" in step["reason"]
    else:
        assert step["ok"] is True and step["with_logprobs"] == 8


def test_cpu_and_device_scores_agree_and_torchrun_resumes_after_kill_9(dry_run):
    steps = json.loads((dry_run[1] / "gpu_check.json").read_text())["steps"]
    same = steps["cpu_vs_gpu"]
    assert same["identical_outputs"] == same["examples"] == same["perplexity_compared"] == 40
    assert same["max_rel_perplexity_diff"] <= same["tolerance"] == PPL_REL_TOL
    run = steps["torchrun"]
    assert 8 <= run["killed_at"] < run["examples"] == run["results_after_resume"] == 60
    assert run["resume_said_finished"] is True and run["differing_from_clean_run"] == 0


def test_without_dry_run_the_check_refuses_a_machine_without_a_gpu(tmp_path):
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 2 and "no CUDA device here" in proc.stdout + proc.stderr


def test_the_wheels_fit_the_budget_and_suit_python_3_12_on_x86_64_linux(tmp_path):
    proc = subprocess.run(["bash", "scripts/gpu_wheels.sh", "--dest", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = sorted(tmp_path.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    tree = sum((ROOT / f).stat().st_size for f in subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())
    assert tree + total < 64 * 2**20
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    ok = {*cpython_tags((3, 12), platforms=platforms), *compatible_tags((3, 12), platforms=platforms)}
    names = set()
    for wheel in wheels:
        name, _, _, tags = parse_wheel_filename(wheel.name)
        assert tags & ok, wheel.name
        names.add(str(name))
    assert {"sqlalchemy", "alembic", "rouge-score", "nltk", "absl-py", "pydantic", "pydantic-core",
            "unsloth", "unsloth-zoo", "trl"} <= names
    assert "bitsandbytes" not in names and "Unsloth travels" in proc.stdout
