"""Labels: a column of strings as codes answers as the strings would."""

from __future__ import annotations

import numpy as np
import pytest

from rollrisk.strategies.labels import Labels, common_codes


def test_labels_of_strings_answer_as_the_strings_do():
    values = ["call", None, "reminder", "call", "legal_referral", None]
    labels = Labels.of(values)
    assert labels.tolist() == values  # None stays None (not NaN)
    assert np.asarray(labels).tolist() == values
    assert labels.equals("call").tolist() == [v == "call" for v in values]
    assert labels.isin({"reminder", None}).tolist() == [v in {"reminder", None} for v in values]
    assert labels.where(lambda v: v is not None and v.startswith("c")).tolist() == [
        True, False, False, True, False, False,
    ]  # fmt: skip
    rows = np.array([4, 0, 0, 5])
    assert labels.take(rows).tolist() == [values[i] for i in rows]
    mask = labels.equals("call")
    assert labels.take(mask).tolist() == ["call", "call"]
    assert Labels.of(labels) is labels
    empty = Labels.of([])
    assert len(empty) == 0 and empty.equals("call").tolist() == [] and empty.tolist() == []


def test_codes_given_with_repeated_names_answer_by_the_name():
    # the simulator's way: channel codes mapped to the action each channel stands for
    channels = np.array([0, 1, 2, 1], dtype=np.int8)
    actions = Labels(channels, ["reminder", "call", "call"])
    assert actions.equals("call").tolist() == [False, True, True, True]
    assert actions.tolist() == ["reminder", "call", "call", "call"]


def test_codes_outside_the_names_are_refused():
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 2\)"):
        Labels(np.array([0, 2]), ["a", "b"])
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 1\)"):
        Labels(np.array([-1]), ["a"])
    with pytest.raises(ValueError, match="integer"):
        Labels(np.array([0.0]), ["a"])
    with pytest.raises(ValueError, match="1-d"):
        Labels.of(np.array([["a"]], dtype=object))


def test_common_codes_number_equal_labels_alike_across_columns():
    left = Labels.of(["agent_call", "robo_call", "agent_call"])
    right = Labels(np.array([1, 0, 1, 2]), ["robo_call", "agent_call", "sms"])
    (a, b), width = common_codes(left, right)
    assert width == 3
    decoded = {}
    for code, label in zip([*a, *b], [*left.tolist(), *right.tolist()], strict=True):
        assert decoded.setdefault(int(code), label) == label  # one label per code
    assert len(decoded) == 3  # and one code per label


def test_labels_refuse_eq_and_hand_out_no_writable_view():
    labels = Labels.of(["a", "b"])
    with pytest.raises(TypeError, match="equals"):
        labels == "a"  # noqa: B015 - an array's == would compare rows; this must not say False
    view = np.asarray(labels)
    with pytest.raises(ValueError, match="read-only"):
        view[0] = "z"
    copied = np.array(labels)
    copied[0] = "z"
    assert labels.tolist() == ["a", "b"]
    assert labels.values(np.array([1, 1])).tolist() == ["b", "b"]
