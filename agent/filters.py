"""containerd's filter syntax, used by List, Metrics, Subscribe and ListStatuses.

    filters   := alternative ("|" alternative)*      (several filter strings: OR)
    alternative := selector ("," selector)*          (AND)
    selector  := fieldpath [operator value]          (no operator: the field is present)
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z][A-Za-z0-9_]*
    operator  := "==" | "!=" | "~="
    value     := quoted | [^\\s,|]+
    quoted    := a double-quoted string with backslash escapes

An adaptor is a function from a field path (a tuple of strings) to (value, present).
Malformed filters, invalid regular expressions included, raise InvalidArgument."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from agent.errors import InvalidArgument

Adaptor = Callable[[tuple[str, ...]], tuple[str, bool]]

_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_VALUE = re.compile(r"[^\s,|]+")


@dataclass(frozen=True)
class Selector:
    path: tuple[str, ...]
    op: str  # "?" (present), "==", "!=", "~="
    value: str = ""
    regex: re.Pattern | None = None

    def match(self, adaptor: Adaptor) -> bool:
        value, present = adaptor(self.path)
        if self.op == "?":
            return present
        if self.op == "==":
            return present and value == self.value
        if self.op == "!=":
            return value != self.value
        return self.regex is not None and self.regex.search(value) is not None


class Filter:
    """An OR of ANDs of selectors. The empty filter matches everything."""

    def __init__(self, alternatives: list[list[Selector]]):
        self.alternatives = alternatives

    def match(self, adaptor: Adaptor) -> bool:
        if not self.alternatives:
            return True
        return any(all(s.match(adaptor) for s in alt) for alt in self.alternatives)


MATCH_ALL = Filter([])


def parse_all(filters: Iterable[str]) -> Filter:
    alternatives: list[list[Selector]] = []
    for text in filters:
        if text == "":
            return MATCH_ALL  # an empty filter string matches everything
        alternatives.extend(_Parser(text).parse())
    return Filter(alternatives)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, msg: str) -> InvalidArgument:
        return InvalidArgument(f"invalid filter {self.text!r} at position {self.pos}: {msg}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> list[list[Selector]]:
        alts = [self.selectors()]
        while self.peek() == "|":
            self.pos += 1
            alts.append(self.selectors())
        if self.peek():
            raise self.fail(f"unexpected {self.peek()!r}")
        return alts

    def selectors(self) -> list[Selector]:
        out = [self.selector()]
        while self.peek() == ",":
            self.pos += 1
            out.append(self.selector())
        return out

    def selector(self) -> Selector:
        path = [self.field()]
        while self.peek() == ".":
            self.pos += 1
            path.append(self.field())
        if self.peek() in ("", ",", "|"):
            return Selector(tuple(path), "?")
        op = self.text[self.pos:self.pos + 2]
        if op not in ("==", "!=", "~="):
            raise self.fail('expected an operator ("==", "!=" or "~=")')
        self.pos += 2
        value = self.value()
        regex = None
        if op == "~=":
            try:
                regex = re.compile(value)
            except re.error as e:
                raise self.fail(f"invalid regular expression {value!r}: {e}") from None
        return Selector(tuple(path), op, value, regex)

    def field(self) -> str:
        if self.peek() == '"':
            return self.quoted()
        m = _FIELD.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a field name or a quoted string")
        self.pos = m.end()
        return m.group()

    def value(self) -> str:
        if self.peek() == '"':
            return self.quoted()
        m = _VALUE.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a value")
        self.pos = m.end()
        return m.group()

    def quoted(self) -> str:
        out = []
        self.pos += 1
        escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                if nxt not in escapes:
                    raise self.fail(f"unknown escape \\{nxt}")
                out.append(escapes[nxt])
                self.pos += 2
                continue
            out.append(c)
            self.pos += 1
        raise self.fail("unterminated quoted string")


def label_adaptor(labels: dict[str, str], fields: dict[str, str]) -> Adaptor:
    """An adaptor over plain fields plus `labels.<key>`."""

    def field(path: tuple[str, ...]) -> tuple[str, bool]:
        if path[0] == "labels" and len(path) >= 2:
            key = ".".join(path[1:])
            return (labels[key], True) if key in labels else ("", False)
        if len(path) == 1 and path[0] in fields:
            value = fields[path[0]]
            return value, value != ""
        return "", False

    return field
