"""parse_filter: the request syntax for metadata filters, and the messages that say what to fix."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from service.errors import InvalidRequest
from service.search.filters import parse_filter, parse_iso_date
from service.search.models import AnyOf, Equals, Filter, Range


@pytest.mark.parametrize("raw", [None, {}])
def test_nothing_to_filter_on_is_none(raw: object) -> None:
    assert parse_filter(raw) is None


@pytest.mark.parametrize("value", ["en", 3, 2.5, True, False, ""])
def test_scalar_is_equality(value: str | float | bool) -> None:
    assert parse_filter({"lang": value}) == Filter(conditions=(Equals(field="lang", value=value),))


def test_in_is_any_of_and_keeps_order() -> None:
    parsed = parse_filter({"lang": {"in": ["en", "de", 3]}})
    assert parsed == Filter(conditions=(AnyOf(field="lang", values=("en", "de", 3)),))


def test_numeric_range_bounds_become_floats() -> None:
    parsed = parse_filter({"year": {"gte": 1990, "lt": 2000.5}})
    assert parsed == Filter(conditions=(Range(field="year", gte=1990.0, lt=2000.5),))


def test_date_and_datetime_bounds() -> None:
    parsed = parse_filter({"published": {"gt": "2024-01-31", "lte": "2024-03-01T12:30:00Z"}})
    expected = Range(field="published", gt=date(2024, 1, 31), lte=datetime(2024, 3, 1, 12, 30, tzinfo=UTC))
    assert parsed == Filter(conditions=(expected,))


def test_several_fields_are_all_kept_in_order() -> None:
    parsed = parse_filter({"lang": "en", "meta.year": {"lte": 2000}, "tag": {"in": ["a"]}})
    assert parsed is not None
    assert [condition.field for condition in parsed.conditions] == ["lang", "meta.year", "tag"]


@pytest.mark.parametrize("name", ["a", "A_b-c", "nested.field", "x.y.z9", "0"])
def test_valid_field_names(name: str) -> None:
    assert parse_filter({name: 1}) is not None


@pytest.mark.parametrize("name", ["", "has space", "a..b", ".a", "a.", "a:b", "a/b", "ü", "a*"])
def test_invalid_field_names_say_which_characters_are_allowed(name: str) -> None:
    with pytest.raises(InvalidRequest, match="letters, digits"):
        parse_filter({name: 1})


@pytest.mark.parametrize("raw", [[], "lang=en", 3, [{"lang": "en"}]])
def test_filter_must_be_an_object(raw: object) -> None:
    with pytest.raises(InvalidRequest, match="must be an object"):
        parse_filter(raw)


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), b"bytes"])
def test_equality_needs_a_scalar(value: object) -> None:
    with pytest.raises(InvalidRequest, match="strings, finite numbers or booleans"):
        parse_filter({"lang": value})


def test_a_bare_list_points_to_in() -> None:
    with pytest.raises(InvalidRequest, match='"in"'):
        parse_filter({"lang": ["en", "de"]})


@pytest.mark.parametrize("values", [[], "en", None, {"a": 1}])
def test_in_needs_a_non_empty_list(values: object) -> None:
    with pytest.raises(InvalidRequest, match="non-empty list"):
        parse_filter({"lang": {"in": values}})


@pytest.mark.parametrize("values", [[None], [["en"]], [{"a": 1}], [float("nan")]])
def test_in_values_must_be_scalars(values: list[object]) -> None:
    with pytest.raises(InvalidRequest, match="strings, finite numbers or booleans"):
        parse_filter({"lang": {"in": values}})


def test_in_has_a_size_limit() -> None:
    with pytest.raises(InvalidRequest, match="at most"):
        parse_filter({"id": {"in": list(range(5000))}})


@pytest.mark.parametrize("spec", [{}, {"eq": 1}, {"in": [1], "gte": 1}, {"gte": 1, "between": 2}])
def test_unknown_or_mixed_operators_list_what_is_allowed(spec: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="gte, gt, lte, lt"):
        parse_filter({"year": spec})


@pytest.mark.parametrize("bound", [True, "soon", "2024-02-30", "31/01/2024", None, float("inf"), [1]])
def test_range_bounds_must_be_numbers_or_iso_dates(bound: object) -> None:
    with pytest.raises(InvalidRequest, match="ISO date"):
        parse_filter({"year": {"gte": bound}})


@pytest.mark.parametrize(("first", "second"), [("gt", "gte"), ("lt", "lte")])
def test_one_bound_per_side(first: str, second: str) -> None:
    with pytest.raises(InvalidRequest, match="not both"):
        parse_filter({"year": {first: 1, second: 2}})


def test_range_cannot_mix_numbers_and_dates() -> None:
    with pytest.raises(InvalidRequest, match="all numbers or all dates"):
        parse_filter({"year": {"gte": 1990, "lt": "2000-01-01"}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-31", date(2024, 1, 31)),
        ("2024-01-31T12:00", datetime(2024, 1, 31, 12)),
        ("2024-01-31T12:00:00.5Z", datetime(2024, 1, 31, 12, 0, 0, 500_000, tzinfo=UTC)),
        ("2024-01-31T12:00:00+01:00", datetime(2024, 1, 31, 12, tzinfo=timezone(timedelta(hours=1)))),
    ],
)
def test_parse_iso_date_accepts_iso_dates_and_datetimes(text: str, expected: date) -> None:
    assert parse_iso_date(text) == expected


@pytest.mark.parametrize("text", ["2024", "20240131", "2024-13-01", "2024-01-31 12:00", "Jan 31 2024", "en"])
def test_parse_iso_date_rejects_everything_else(text: str) -> None:
    assert parse_iso_date(text) is None
