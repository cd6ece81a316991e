"""Policies: the shipped files load, mistakes are refused with file, field and problem."""

from __future__ import annotations

import pytest

from moderate import Policy, PolicyError
from moderate.rules import Band


def test_default_file_is_the_built_in_default():
    loaded = Policy.load("policies/default.yaml")
    assert loaded.__dict__ | {"source": None} == Policy().__dict__ | {"source": None}


def test_strict_policy_loads():
    strict = Policy.load("policies/strict.yaml")
    assert strict.pdq.dihedral and strict.pdq.on_low_quality == "review"
    assert strict.pdq.bands == (Band(40, "bank", "pdq.match"), Band(64, "review", "pdq.near"))
    assert strict.limits.max_frames == 300


@pytest.mark.parametrize("text, field, problem", [
    ("default: maybe\n", "default", "must be one of allow, review, block, got 'maybe'"),
    ("on_eror: review\n", "on_eror", "unknown field"),
    ("pdq:\n  min_quality: 101\n", "pdq.min_quality", "must be an integer from 0 to 100"),
    ("pdq:\n  dihedral: yes please\n", "pdq.dihedral", "must be true or false"),
    ("pdq:\n  thresholds:\n    - {max_distance: 31, action: bank}\n    - {max_distance: abc, action: review}\n",
     "pdq.thresholds[1].max_distance", "must be an integer from 0 to 256, got 'abc'"),
    ("pdq:\n  thresholds:\n    - {max_distance: 40, action: bank}\n    - {max_distance: 30, action: review}\n",
     "pdq.thresholds[1].max_distance", "must be larger than the previous band's 40"),
    ("pdq:\n  thresholds:\n    - {max_distance: 31, action: ban}\n", "pdq.thresholds[0].action", "must be one of"),
    ("pdq:\n  thresholds: []\n", "pdq.thresholds", "non-empty list"),
    ("banks:\n  TERROR: obliterate\n", "banks.TERROR", "must be one of allow, review, block, bank"),
    ("banks: some\n", "banks", "must be 'all' or a mapping"),
    ("limits:\n  max_pixels: -5\n", "limits.max_pixels", "must be an integer"),
    ("pdq: [1, 2]\n", "pdq.", "must be a mapping"),
])
def test_mistakes_name_file_field_and_problem(tmp_path, text, field, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}") and problem in message and "\n" not in message


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy"):
        Policy.load(tmp_path / "missing.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("pdq:\n  dihedral: [true\n")
    with pytest.raises(PolicyError, match=r"broken.yaml: not valid YAML \(line \d+\)"):
        Policy.load(path)


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("on_error: review\npdq:\n  dihedral: true\non_error: allow\n")
    with pytest.raises(PolicyError, match=r"dup.yaml: not valid YAML \(line 4\): duplicate key 'on_error'"):
        Policy.load(path)


def test_non_utf8_policy(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError, match="not UTF-8"):
        Policy.load(path)


def _bomb(levels: int = 9) -> str:
    """The billion laughs: each level lists the previous one ten times (10**levels strings)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines)


def test_an_alias_bomb_is_refused_fast_with_a_short_error(tmp_path):
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(f"bomb:\n  {_bomb().replace(chr(10), chr(10) + '  ')}\ndefault: *a9\n")
    start = time.monotonic()
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert message == f"{path}: policy is too large: over 100000 values once its aliases are expanded"


@pytest.mark.parametrize("text, problem", [
    ("banks: &b [*b]\n", "an alias refers to a mapping or list that contains it"),  # a cycle
    ("pdq:\n  thresholds: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("default: " + "x" * 50_000 + "\n", "must be one of allow, review, block, got 'xxxx"),
    ("? [a, b]\n: 1\n", "found unhashable key"),
])
def test_hostile_policies_cost_bounded_time_and_short_errors(tmp_path, text, problem):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    message = str(info.value)
    assert problem in message and len(message) < 600 and "\n" not in message


def test_an_oversized_policy_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 200_000)
    with pytest.raises(PolicyError, match=r"huge.yaml: policy is over 1048576 bytes"):
        Policy.load(path)


def test_a_bomb_in_the_command_line_policy_is_one_short_line(tmp_path, photos):
    from .conftest import run_cli

    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(12) + "\nname: *a12\n")
    out = run_cli("check", str(photos["coins"]), "--policy", str(path), data_dir=tmp_path / "data")
    err = out.stderr.decode()
    assert out.returncode == 1 and err.count("\n") == 1 and len(err) < 300 and "too large" in err
