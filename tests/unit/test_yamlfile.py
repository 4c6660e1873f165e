"""The one YAML loader: YAML 1.2 core readings, and every refusal with its line and limit."""


import pytest

from xenlab.errors import SpecError
from xenlab.spec import parse_lab
from xenlab.yamlfile import MAX_DEPTH, MAX_NODES, load_located, parse_located


def refused(text: str) -> tuple[int | None, str]:
    with pytest.raises(SpecError) as info:
        parse_located(text, "f.yaml")
    [problem] = info.value.problems
    return problem


@pytest.mark.parametrize("text,data", [
    ("a: yes\nb: on\nc: 1:30\nd: 2024-01-01\ne: ~\n", {"a": "yes", "b": "on", "c": "1:30", "d": "2024-01-01", "e": None}),
    ("a: 0x1F\nb: 0o17\nc: -0\nd: +12\ne: .5\nf: 1e3\ng: 0\n", {"a": 31, "b": 15, "c": 0, "d": 12, "e": 0.5, "f": 1000.0,
                                                              "g": 0}),
    ("a: true\nb: False\nc: '01000'\nd: !!str 12\ne: !!int \"3\"\n", {"a": True, "b": False, "c": "01000", "d": "12",
                                                                     "e": 3}),
    ("a: &x [1, 2]\nb: *x\n", {"a": [1, 2], "b": [1, 2]}),
])
def test_plain_values_are_read_by_the_yaml_1_2_core_schema(text, data):
    assert parse_located(text).data == data


def test_host_names_that_yaml_1_1_read_as_booleans_are_names():
    assert list(parse_lab("name: words\nhosts:\n  on:\n  no:\n").hosts) == ["on", "no"]


@pytest.mark.parametrize("text,line,fragment", [
    ("a: 1\nb: 01000\n", 2, "write 1000"),
    ("a: .nan\n", 1, "not a finite number"),
    ("a: -.inf\n", 1, "not a finite number"),
    ("a: 1e999\n", 1, "not a finite number"),
    ("a: 1" + "0" * 40 + "\n", 1, "the limit is 30"),
    ("a: !!python/object/apply:os.system [ls]\n", 1, "tag !!python/object/apply:os.system is not allowed"),
    ("a: !custom 3\n", 1, "tag !custom is not allowed"),
    ("a: !!binary aGk=\n", 1, "tag !!binary is not allowed"),
    ("a: !!int x\n", 1, "'x' is not a valid !!int"),
    ("b: {a: 1}\n<<: {a: 1}\n", 2, "merge keys (<<)"),
    ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
    ("a: 1\n---\nb: 2\n", 2, "a second YAML document"),
    ("x: 1\na: \"abc\nb: 2\nc: 3\n", 2, "never closed"),
    ("a: [1, 2\nb: 3\n", 2, "YAML syntax error"),
    ("a: \x01\n", 1, "character #x0001"),
    ("a: &a [*a]\n", 1, "recursive alias"),
    ("", 1, "the file is empty"),
    ("[" * 50_000 + "]" * 50_000, 1, f"nested more than {MAX_DEPTH} levels"),
])
def test_refusals_name_the_line_and_what_to_do(text, line, fragment):
    found_line, message = refused(text)
    assert found_line == line and fragment in message


def test_a_billion_laughs_is_measured_not_expanded():
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
    line, message = refused(text)
    # refused at f, the first anchor whose expansion would cross the limit (counted through
    # the aliases, never expanded: expanded, i would be 387 million strings)
    assert line == 6 and f"more than {MAX_NODES} values" in message


def test_aliases_that_nest_past_the_depth_limit():
    text = "a0: &a0 " + "[" * 30 + "1" + "]" * 30 + "\n"
    for i in range(1, 3):
        text += f"a{i}: &a{i} " + "[" * 30 + f"*a{i - 1}" + "]" * 30 + "\n"
    _, message = refused(text)
    assert f"nest this more than {MAX_DEPTH} levels deep" in message


def test_a_file_past_the_size_limit_is_refused_unread(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: 1\n" + b"#" * (2 * 1024 * 1024))
    with pytest.raises(SpecError) as info:
        load_located(big)
    assert "larger than 1024 KiB" in str(info.value)


def test_bytes_that_are_not_utf8_are_reported_by_line_and_column(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        load_located(path)
    assert info.value.problems == [(2, "byte 0xe9 at column 7 is not UTF-8: save the file as UTF-8")]


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_located(tmp_path)
    assert "is a directory" in str(info.value)
