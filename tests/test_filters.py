"""containerd's filter syntax."""

from __future__ import annotations

import pytest

from agent import filters
from agent.errors import InvalidArgument

OBJ = filters.label_adaptor({"app": "web", "tier x": "front"},
                            {"id": "f1", "namespace": "test", "runtime": "io.containerd.runc.v2"})


@pytest.mark.parametrize("text,expected", [
    ("id==f1", True),
    ("id==f2", False),
    ("id!=f2", True),
    ("id~=^f[0-9]$", True),
    ('id~="^g"', False),
    ("labels.app==web", True),
    ('labels."tier x"==front', True),
    ("labels.app", True),
    ("labels.missing", False),
    ("id==f1,namespace==test", True),
    ("id==f1,namespace==other", False),
    ("id==f2|namespace==test", True),
    ("id==f2|namespace==other", False),
    ('runtime=="io.containerd.runc.v2"', True),
])
def test_matching(text, expected):
    assert filters.parse_all([text]).match(OBJ) is expected


def test_several_strings_are_or():
    assert filters.parse_all(["id==f2", "id==f1"]).match(OBJ)
    assert not filters.parse_all(["id==f2", "id==f3"]).match(OBJ)
    assert filters.parse_all([]).match(OBJ)


@pytest.mark.parametrize("text", ["id~=(", "==x", "id=x", "id==", 'labels."open', "id==a,", "a b"])
def test_malformed_is_invalid_argument(text):
    with pytest.raises(InvalidArgument):
        filters.parse_all([text])
