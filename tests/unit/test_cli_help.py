"""`fathom ... --help` tells a newcomer what each option takes and its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import MCP_TOOLS, build_parser, main
from service.mcp_server import build_mcp_server
from service.runtime import new_runtime
from service.settings import settings_from_dict


def help_of(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width


def test_every_command_lists_config(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["serve"], ["index"], ["verify"], ["eval"], ["keys", "create"], ["keys", "list"]):
        assert "--config PATH TOML file laid over the packaged defaults" in help_of(capsys, *command)


def test_index_shows_its_defaults_and_what_collection_is(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "index")
    assert "--collection COLLECTION the collection to write (made if new)" in text
    for option, default in (("--chunk-tokens", "256"), ("--overlap", "32"), ("--batch-size", "512")):
        assert f"(default: {default})" in text.split(option)[-1].split("--")[0], option


def test_eval_names_its_stages(capsys: pytest.CaptureFixture[str]) -> None:
    assert "of bm25,dense,hybrid,rerank (default: all)" in help_of(capsys, "eval")


@pytest.mark.anyio
async def test_mcp_names_the_tools_the_server_has(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    runtime = new_runtime(settings_from_dict({"data_dir": str(tmp_path)}), keys=False, models=False)
    served = {tool.name for tool in await build_mcp_server(runtime).list_tools()}
    assert set(MCP_TOOLS) == served
    assert f"Serve Fathom's MCP tools ({', '.join(MCP_TOOLS)})" in help_of(capsys, "mcp")


@pytest.mark.parametrize(
    ("argv", "config"),
    [
        (["--config", "a.toml", "keys", "list"], "a.toml"),
        (["keys", "list", "--config", "b.toml"], "b.toml"),
        (["--config", "a.toml", "eval", "folder", "--collection", "c", "--config", "b.toml"], "b.toml"),
        (["serve"], None),
    ],
)
def test_config_is_read_before_or_after_the_command(argv: list[str], config: str | None) -> None:
    """One --config option, declared once, on `fathom` and on each command: the last one given wins."""
    assert getattr(build_parser().parse_args(argv), "config", None) == config
