"""key_lines: the line of every table and key, for FILE:LINE messages."""

from __future__ import annotations

import tomllib

import pytest

from sluice.engine.model.toml_lines import key_lines


def lines_of(source: str) -> dict:
    tomllib.loads(source)  # the scanner only ever sees text tomllib accepted
    return key_lines(source)


def test_headers_and_keys() -> None:
    source = """\
# a comment with = and [brackets]
top = 1

[estate]
name = "x"   # trailing comment

[targets.web-1]
channel = "dev"
"""
    assert lines_of(source) == {
        ("top",): 2,
        ("estate",): 4,
        ("estate", "name"): 5,
        ("targets",): 7,
        ("targets", "web-1"): 7,
        ("targets", "web-1", "channel"): 8,
    }


def test_array_of_tables_is_indexed() -> None:
    source = """\
[[channels]]
name = "a"

[[channels]]
name = "b"
soak = "1m"

[[simulation.regressions]]
module = "m"
[[simulation.regressions]]
module = "n"
"""
    lines = lines_of(source)
    assert lines[("channels",)] == 1
    assert lines[("channels", 0)] == 1
    assert lines[("channels", 0, "name")] == 2
    assert lines[("channels", 1)] == 4
    assert lines[("channels", 1, "name")] == 5
    assert lines[("channels", 1, "soak")] == 6
    assert lines[("simulation",)] == 8
    assert lines[("simulation", "regressions", 0, "module")] == 9
    assert lines[("simulation", "regressions", 1)] == 10
    assert lines[("simulation", "regressions", 1, "module")] == 11


def test_subtables_of_an_array_entry() -> None:
    source = """\
[[a]]
x = 1
[a.sub]
y = 2
[[a.list]]
z = 3
[[a]]
[[a.list]]
w = 4
"""
    lines = lines_of(source)
    assert lines[("a", 0, "sub", "y")] == 4
    assert lines[("a", 0, "list", 0, "z")] == 6
    assert lines[("a", 1)] == 7
    assert lines[("a", 1, "list", 0, "w")] == 9


def test_dotted_keys() -> None:
    source = """\
[targets.web-1]
vars.region = "eu"
vars . tier = "dev"
"""
    lines = lines_of(source)
    assert lines[("targets", "web-1", "vars")] == 2
    assert lines[("targets", "web-1", "vars", "region")] == 2
    assert lines[("targets", "web-1", "vars", "tier")] == 3


def test_quoted_keys() -> None:
    source = """\
[targets."db.primary"]
"a b" = 1
'lit.eral' = 2
[ "checks" . 'x y' ]
url = "u"
"""
    lines = lines_of(source)
    assert lines[("targets", "db.primary")] == 1
    assert lines[("targets", "db.primary", "a b")] == 2
    assert lines[("targets", "db.primary", "lit.eral")] == 3
    assert lines[("checks", "x y")] == 4
    assert lines[("checks", "x y", "url")] == 5


def test_inline_tables() -> None:
    source = """\
[targets.web-1]
vars = { region = "eu-west-1", "tier" = "a,b}", list = [1, {x = 2}], n.m = 3 }
after = 1
"""
    lines = lines_of(source)
    assert lines[("targets", "web-1", "vars")] == 2
    assert lines[("targets", "web-1", "vars", "region")] == 2
    assert lines[("targets", "web-1", "vars", "tier")] == 2
    assert lines[("targets", "web-1", "vars", "list")] == 2
    assert lines[("targets", "web-1", "vars", "n", "m")] == 2
    assert lines[("targets", "web-1", "after")] == 3


def test_inline_table_values_with_escaped_quotes() -> None:
    source = """\
[t]
vars = { a = "x\\", y = 1", b = 2, "c\\u00e9" = 3 }
"""
    lines = lines_of(source)
    assert lines[("t", "vars", "a")] == 2
    assert lines[("t", "vars", "b")] == 2
    assert lines[("t", "vars", "cé")] == 2
    assert ("t", "vars", "y") not in lines


def test_multi_line_strings_hide_their_contents() -> None:
    source = '''\
[executors.x]
apply = """
fake = "not a key"
[not.a.table]
"""
literal = \'\'\'
also = "not a key"
\'\'\'
one_line = """x = 1"""
closes_mid_line = """
y = 2""" # comment
kind = "local"
'''
    lines = lines_of(source)
    assert lines[("executors", "x", "apply")] == 2
    assert lines[("executors", "x", "literal")] == 6
    assert lines[("executors", "x", "one_line")] == 9
    assert lines[("executors", "x", "closes_mid_line")] == 10
    assert lines[("executors", "x", "kind")] == 12
    assert ("executors", "x", "fake") not in lines
    assert ("not",) not in lines
    assert ("executors", "x", "also") not in lines
    assert ("executors", "x", "y") not in lines


def test_multi_line_arrays() -> None:
    source = """\
[[channels]]
waves = [
  1,          # a canary
  "25%",      # ] a bracket in a comment
  "100%",
]
checks = [
  "a", "b]",
  [ "nested" ],
]
soak = "1m"
"""
    lines = lines_of(source)
    assert lines[("channels", 0, "waves")] == 2
    assert lines[("channels", 0, "checks")] == 7
    assert lines[("channels", 0, "soak")] == 11


def test_escaped_quotes_in_strings() -> None:
    source = """\
a = "say \\"[hi]\\" = x"
b = 'c:\\\\path['
c = 1
"""
    lines = lines_of(source)
    assert lines == {("a",): 1, ("b",): 2, ("c",): 3}


def test_only_newline_ends_a_line() -> None:
    # U+2028, U+2029 and NEL are not line breaks in TOML (str.splitlines() thinks they are);
    # counting them would shift every later line.
    source = 'a = "x\u2028y"\n# a comment \x85 with \u2029 breaks\nb = 2\r\nc = 3\n'
    lines = lines_of(source)
    assert lines == {("a",): 1, ("b",): 3, ("c",): 4}


def test_a_valid_estate_is_loaded_without_mapping_its_lines(tmp_path, monkeypatch) -> None:
    """Lines are mapped for a problem's message only: a valid file never pays for it."""
    from sluice.engine.model import estate as estate_module

    path = tmp_path / "estate.toml"
    path.write_text(
        '[estate]\nname = "e"\n[[channels]]\nname = "dev"\nwaves = ["100%"]\n'
        '[targets.a]\nchannel = "dev"\nexecutor = "sim"\n'
        '[executors.sim]\nkind = "simulated"\n'
        '[modules.m]\nversions = ["1.0.0"]\ninitial = "1.0.0"\n'
    )

    def unwanted(source: str) -> dict:
        raise AssertionError("key_lines called for a valid estate")

    monkeypatch.setattr(estate_module, "key_lines", unwanted)
    assert estate_module.load_estate(path).name == "e"
    path.write_text(path.read_text().replace('executor = "sim"', 'executor = "nope"'))
    monkeypatch.undo()
    with pytest.raises(estate_module.EstateError) as caught:
        estate_module.load_estate(path)
    assert f"{path}:8:" in str(caught.value)
