"""The packaged default.toml is the settings reference the README promises: every setting, as in code."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from typing import Any

import msgspec

from service.settings import DEFAULT_CONFIG, ModelSettings, Settings

TEXT = DEFAULT_CONFIG.read_text(encoding="utf-8")


def setting_keys(struct: type[Any], section: str = "") -> Iterator[tuple[str, str]]:
    """(section, key) of every setting; tables of user-named entries ([rerank.models."id"]) are skipped."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        if isinstance(field.type, msgspec.inspect.StructType):
            yield from setting_keys(field.type.cls, f"{section}.{field.name}".lstrip("."))
        elif not isinstance(field.type, msgspec.inspect.DictType):
            yield section, field.name


def section_lines(text: str) -> dict[str, list[str]]:
    """The lines under each [section] header ("" for the top), commented lines included."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[([^\]]+)\]\s*", line)
        if header:
            current = header.group(1)
            sections.setdefault(current, [])
        else:
            sections[current].append(line)
    return sections


def test_every_setting_appears_with_a_comment_in_its_section() -> None:
    sections = section_lines(TEXT)
    missing = []
    for section, key in setting_keys(Settings):
        lines = sections.get(section, [])
        # Settings without a value by default (a model path) appear commented out, as an example.
        if not any(re.match(rf"(# )?{key} = ", line) for line in lines):
            missing.append(f"[{section}] {key}" if section else key)
    assert not missing, f"settings missing from {DEFAULT_CONFIG}: {missing}"


def test_the_file_holds_the_same_defaults_as_the_code() -> None:
    """A value changed in one place but not the other would make the reference lie."""
    from_file = msgspec.convert(tomllib.loads(TEXT), Settings, strict=False)
    in_code = Settings()
    in_code.rerank.models = {"BAAI/bge-reranker-v2-m3": ModelSettings()}
    assert msgspec.to_builtins(from_file) == msgspec.to_builtins(in_code)
