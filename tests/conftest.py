"""Shared fixtures: a migrated temporary SQLite store and a tiny Llama checkpoint built on the spot."""
from __future__ import annotations

import glob as _glob
import importlib.util as _ilu
import os
import shutil as _shutil
import subprocess as _subprocess
import uuid as _uuid
from pathlib import Path

import pytest

from tests.support.serving import free_port

ROOT = Path(__file__).resolve().parent.parent

# An accidental hub call must fail fast instead of hanging on a machine without internet.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_TEXTS = [
    f"{a} {b}" for a in ("Hello there.", "How do I reset my password?", "What is 3 plus 4?", "Tell me about Paris.",
                         "My parcel is late.", "Thanks a lot!")
    for b in ("Sure, here is how.", "The answer is 7.", "Paris is the capital of France.",
              "I am sorry about the delay.", "You are welcome.", "Click the reset link in the email.")
]


TINY_LLAMA_ENV = "EVAL_TEST_TINY_LLAMA"  # a folder where build_tiny_llama() already saved it (make mutation)


def build_tiny_llama(directory) -> Path:
    from evaluator.tiny import save_tiny_llama

    return save_tiny_llama(directory, TINY_TEXTS, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny LlamaForCausalLM + tokenizer with a Llama-3 chat template (random weights, fp32).

    Built once per test session (seeded: always the same weights). ``make mutation`` starts a pytest
    session per mutant, so scripts/mutation.py builds it once beforehand and names the folder in
    $EVAL_TEST_TINY_LLAMA; tests only read it."""
    prebuilt = os.environ.get(TINY_LLAMA_ENV)
    if prebuilt:
        return Path(prebuilt)
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def store_url(tmp_path) -> str:
    """URL of a fresh SQLite store migrated to head."""
    from db import open_store

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    open_store(url).dispose()
    return url


@pytest.fixture()
def engine(store_url):
    from db import make_engine

    eng = make_engine(store_url)
    yield eng
    eng.dispose()


# The real-Unsloth backend test runs in its own virtual environment (.venv-unsloth, see
# scripts/test.sh), because importing unsloth patches transformers for the whole process.
# In an environment without unsloth it is not collected at all rather than skipped.

collect_ignore = [] if _ilu.find_spec("unsloth") else ["evaluator/test_unsloth_backend.py"]


# ------------------------------------------------------------------ PostgreSQL
# A real PostgreSQL server (Debian's binaries, installed by scripts/setup.sh --tests) started once per
# test session on a loopback port, in a temporary data directory; one fresh database per test.
#
# STORES: the backends the store suite runs on. `make mutation` sets EVAL_TEST_STORES=sqlite: mutmut
# runs every mutant in a new pytest session, and starting a server for each costs more than the test.
# The query code it mutates is the same Python for both; `make test` always runs both.
STORES = [s.strip() for s in os.environ.get("EVAL_TEST_STORES", "sqlite,postgresql").split(",") if s.strip()]
if not STORES or set(STORES) - {"sqlite", "postgresql"}:
    raise RuntimeError(f"EVAL_TEST_STORES={os.environ['EVAL_TEST_STORES']!r}: expected sqlite, postgresql or both")



def _pg_bin() -> Path | None:
    found = sorted(_glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_server():
    """(host, port, user) of a PostgreSQL server running for this test session."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries not found: run 'bash scripts/setup.sh --tests' (apt-get install postgresql)")
    import tempfile

    # Not under pytest's tmp dir: that is private to root, and the server runs as "postgres" there.
    base = Path(tempfile.mkdtemp(prefix="evalbench-pg-"))
    data = base / "data"
    port = free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root; use the postgres system user
        _shutil.chown(base, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    def run(*cmd: str) -> None:
        _subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "evaltest", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60",
        "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start")
    yield ("127.0.0.1", port, "evaltest")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    _shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def pg_url(postgres_server) -> str:
    """URL of a fresh, empty PostgreSQL database."""
    import psycopg

    host, port, user = postgres_server
    name = f"t_{_uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"


@pytest.fixture(params=STORES)
def any_store_url(request, tmp_path) -> str:
    """A fresh store migrated to head, on SQLite and on PostgreSQL (the store suite runs on both)."""
    from db import open_store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    open_store(url).dispose()
    return url


@pytest.fixture()
def any_engine(any_store_url):
    from db import make_engine

    eng = make_engine(any_store_url)
    yield eng
    eng.dispose()


# ------------------------------------------------------------------ demo models
@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """A demo model cache built once per test session (about a minute of CPU)."""
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="session")
def demo_models(demo_cache):
    from evaluator.demo import build_demo_models

    return build_demo_models(demo_cache, progress=False)


def _new_pg_database(server) -> str:
    import psycopg

    host, port, user = server
    name = f"t_{_uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"


@pytest.fixture(scope="module", params=STORES)
def new_store_url(request, tmp_path_factory):
    """A function returning the URL of a fresh, empty store, on SQLite and on PostgreSQL.

    Module-scoped (unlike ``any_store_url``) so that a module of read-only query tests can seed one
    store per backend and share it; call it once per store the module needs.
    """
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    return lambda: _new_pg_database(server)


@pytest.fixture(scope="module")
def pg_module_url(postgres_server) -> str:
    """URL of a fresh, empty PostgreSQL database shared by one test module."""
    return _new_pg_database(postgres_server)
