"""Policies: the shipped files load, mistakes are refused with file, field and problem."""

from __future__ import annotations

import pytest

from moderate import Policy, PolicyError
from moderate.policy import Band


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
