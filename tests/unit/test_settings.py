"""Settings layering: defaults, then a file, then FATHOM_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import ConfigError, env_overrides, load_settings


def test_defaults_match_the_documented_keys() -> None:
    settings = load_settings(environ={})
    assert settings.data_dir == "data"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.auth.enabled is True
    assert (settings.rerank.max_documents, settings.rerank.max_length) == (1000, 512)
    assert settings.rerank.default_model == "BAAI/bge-reranker-v2-m3"
    assert "BAAI/bge-reranker-v2-m3" in settings.rerank.enabled_models()


def test_file_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "fathom.toml"
    config.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[rerank.models."m"]\npath = "/models/m"\n')
    environ = {"FATHOM_CONFIG": str(config), "FATHOM_SERVER__PORT": "9100", "FATHOM_AUTH__ENABLED": "false"}
    settings = load_settings(environ=environ)
    assert settings.server.port == 9100  # environment beats the file
    assert settings.server.host == "0.0.0.0"  # the file beats the defaults
    assert settings.auth.enabled is False
    assert settings.rerank.models["m"].path == "/models/m"
    assert "BAAI/bge-reranker-v2-m3" in settings.rerank.models  # tables merge, not replace


def test_explicit_file_wins_over_fathom_config(tmp_path: Path) -> None:
    named = tmp_path / "a.toml"
    named.write_text("data_dir = 'from-a'\n")
    settings = load_settings(named, environ={"FATHOM_CONFIG": str(tmp_path / "missing.toml")})
    assert settings.data_dir == str(tmp_path.resolve() / "from-a")


def test_env_values_parse_as_toml_or_stay_strings() -> None:
    environ = {
        "FATHOM_DATA_DIR": "/srv/fathom",
        "FATHOM_RERANK__MAX_LENGTH": "256",
        "FATHOM_TEST_ELASTICSEARCH_URL": "http://127.0.0.1:9200",  # names no setting: not one
        "OTHER": "x",
    }
    assert env_overrides(environ) == {"data_dir": "/srv/fathom", "rerank": {"max_length": 256}}


def test_a_misspelt_key_in_a_known_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match="prot"):
        load_settings(environ={"FATHOM_SERVER__PROT": "80"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[server]\nport = 'eighty'\n", "port"),
        ("[server]\nprot = 80\n", "prot"),
        ("not toml at all [", "not valid TOML"),
        ("[elasticsearch]\nbm25_b = 1.5\n", "bm25_b"),
        ("[elasticsearch]\nbm25_k1 = -1\n", "bm25_k1"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(config, environ={})


def test_relative_paths_in_a_config_file_are_read_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conf" / "fathom.toml"
    config.parent.mkdir()
    config.write_text(
        'data_dir = "state"\n'
        '[embedding]\npath = "../models/embedder"\n'
        '[qdrant]\npath = ""\n'  # empty: not set, stays empty
        '[rerank.models."m"]\npath = "/abs/m"\n'
        '[rerank.models."n"]\npath = "models/n"\n'
        '[context.tokenizers]\nt = "tok.json"\n'
    )
    monkeypatch.chdir("/")  # where an assistant may start `fathom mcp`
    settings = load_settings(config, environ={"FATHOM_EMBEDDING__MAX_LENGTH": "128"})
    folder = config.parent.resolve()
    assert settings.data_dir == str(folder / "state")
    assert settings.embedding.path == str(folder / "../models/embedder")
    assert settings.qdrant.path == ""
    assert settings.rerank.models["m"].path == "/abs/m"
    assert settings.rerank.models["n"].path == str(folder / "models/n")
    assert settings.context.tokenizers == {"t": str(folder / "tok.json")}


def test_paths_from_the_environment_stay_relative_to_the_working_directory(tmp_path: Path) -> None:
    config = tmp_path / "fathom.toml"
    config.write_text('[embedding]\npath = "from-file"\n')
    settings = load_settings(config, environ={"FATHOM_EMBEDDING__PATH": "from-env", "FATHOM_DATA_DIR": "d"})
    assert (settings.embedding.path, settings.data_dir) == ("from-env", "d")


def test_the_offline_config_finds_the_shared_models_from_any_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir("/")
    settings = load_settings(repo / "config" / "offline.toml", environ={})
    assert settings.embedding.path is not None
    expected = repo.parent / "shared" / "models" / "all-MiniLM-L6-v2"
    assert Path(settings.embedding.path).resolve() == expected.resolve()
