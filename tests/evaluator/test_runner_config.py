"""RunConfig: one validated object from a YAML/TOML file and/or flags; flags override the file."""
from __future__ import annotations

import pytest

from evaluator.config import ConfigError, RunConfig, build_config, read_config_file


def test_defaults_are_greedy_auto_batch_test_split():
    cfg = build_config(overrides={"model": "m", "dataset": "d.jsonl"})
    assert cfg.split == "test" and cfg.turns == "last" and cfg.batch_size == "auto" and cfg.backend == "auto"
    s = cfg.generation_settings()
    assert s.do_sample is False and s.max_new_tokens == 256 and s.seed == 0


def test_unknown_key_in_a_file_is_an_error(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("model: m\ndataset: d.jsonl\nmax_new_tokenz: 12\n")
    with pytest.raises(ConfigError, match="unknown key 'max_new_tokenz'"):
        build_config(f)


def test_unknown_key_in_the_object_is_an_error():
    with pytest.raises(ValueError):
        RunConfig(model="m", dataset="d", colour="blue")


def test_missing_required_key_names_the_flag():
    with pytest.raises(ConfigError, match="'dataset' is required .--dataset."):
        build_config(overrides={"model": "m"})


def test_flags_override_the_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("model: from-file\ndataset: d.jsonl\nmax-new-tokens: 64\nbaselines: [b1]\nbatch_size: 4\n")
    cfg = build_config(f, {"max_new_tokens": 16, "batch_size": "auto", "name": None})
    assert cfg.model == "from-file"  # not given as a flag: the file's value
    assert cfg.max_new_tokens == 16 and cfg.batch_size == "auto"  # flags win
    assert cfg.baselines == ["b1"]


def test_toml_file(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('model = "m"\ndataset = "d.jsonl"\nmetrics = ["bleu", "rougeL"]\nbatch-size = 8\n')
    cfg = build_config(f)
    assert cfg.metrics == ["bleu", "rougeL"] and cfg.batch_size == 8


def test_batch_size_is_auto_or_a_positive_integer():
    assert build_config(overrides={"model": "m", "dataset": "d", "batch_size": "16"}).batch_size == 16
    for bad in ("big", 0, -2):
        with pytest.raises(ConfigError, match="batch_size"):
            build_config(overrides={"model": "m", "dataset": "d", "batch_size": bad})


def test_sampling_settings_without_do_sample_are_an_error():
    with pytest.raises(ConfigError, match="do_sample"):
        build_config(overrides={"model": "m", "dataset": "d", "temperature": 0.7})
    cfg = build_config(overrides={"model": "m", "dataset": "d", "temperature": 0.7, "do_sample": True})
    assert cfg.generation_settings().temperature == 0.7


def test_stored_config_omits_the_store_url():
    cfg = build_config(overrides={"model": "m", "dataset": "d", "db": "postgresql://u:secret@h/db"})
    assert "db" not in cfg.stored() and "secret" not in str(cfg.stored())
    assert RunConfig(**cfg.stored()).model == "m"


def test_bad_file_contents_are_one_line_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("model: [unclosed\n")
    (tmp_path / "b.toml").write_text("model = \n")
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "d.yaml").write_text("- a list\n")
    for name, match in [("a.yaml", "not valid YAML"), ("b.toml", "not valid TOML"), ("c.json", ".yaml, .yml or .toml"),
                        ("d.yaml", "must hold a mapping")]:
        with pytest.raises(ConfigError, match=match) as info:
            read_config_file(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.yaml")
