"""The text syntax of filters, compiled to the JSON tree (``filters.py``)::

    camera = "cam1" and score > 0.5 and captured_at >= 2024-05-01 and not weather in (rain, snow)

Grammar (keywords are case-insensitive; ``and`` binds tighter than ``or``)::

    filter    := or
    or        := and ("or" and)*
    and       := unary ("and" unary)*
    unary     := "not" unary | "(" filter ")" | shorthand | predicate
    shorthand := "in_collection" (value | "(" value ("," value)* ")") | "preset" value
               | "in_map" name ("polygon" | "box") "(" integer ("," integer)* ")"
    predicate := target ("=" | "!=" | "<" | "<=" | ">" | ">=") value
               | target ["not"] "in" "(" value ("," value)* ")"
               | target ("exists" | "missing")
               | target ("prefix" | "contains" | "icontains" | "ieq" | "match" | "under") value
    target    := name | `any name` | @field
    value     := "quoted" | 'quoted' | bare word (a number, a date, true, false, a word)

A metadata key is a bare name (letters, digits, ``_ - .``) or any name in backticks; an item field
starts with ``@`` (``@type``, ``@folder``, ``@size`` ...).  ``in_collection X`` and ``preset X``
are the tree's shorthands; followed by an operator they are metadata keys of those names.
``in_map clip polygon(x1, y1, x2, y2, x3, y3, ...)`` and ``in_map clip box(x0, y0, x1, y1)`` are
a map area (``{"in_map": ...}``): grid coordinates, flat, two per vertex.  A bare
value is read by its target's type: a number for number keys and fields, true/false for booleans,
text otherwise; a quoted value is always text.  Errors name the position (from 1) and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral import errors
from corral.core.index.filters import MAX_DEPTH
from corral.errors import ErrorDetail

MAX_LENGTH = 10_000
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<quoted>`[^`]*`)
    |(?P<op><=|>=|!=|=|<|>|\(|\)|,|@)
    |(?P<word>[^\s()"'`,=<>!@]+)
    |(?P<bad>\S)
    )""",
    re.VERBOSE,
)
COMPARISONS = {"=": "eq", "!=": "ne", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
WORD_OPS = ("prefix", "contains", "icontains", "ieq", "match", "under")
_ESCAPE = re.compile(r"\\(.)")
#: A number as the syntax reads it: ASCII digits, an optional fraction and exponent.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Token:
    kind: str  # string, quoted, op, word, end
    text: str
    pos: int  # 1-based

    def describe(self) -> str:
        return "the end of the filter" if self.kind == "end" else repr(self.text)


def _tokens(source: str) -> list[Token]:
    out = []
    pos = 0
    while source[pos:].strip():
        m = _TOKEN.match(source, pos)
        assert m is not None
        if m.end() == pos or not m.lastgroup:
            break
        kind = m.lastgroup
        start = m.start(kind) + 1
        if kind == "bad":
            raise _error(start, "a name, a value or an operator", repr(m.group(kind)))
        out.append(Token(kind, m.group(kind), start))
        pos = m.end()
    out.append(Token("end", "", len(source) + 1))
    return out


def _error(pos: int, expected: str, found: str) -> errors.ValidationFailed:
    message = f"at position {pos}: expected {expected}, found {found}"
    detail = ErrorDetail(message, field="where")
    return errors.ValidationFailed(f"invalid filter: {message}", details=[detail])


#: target ("key" or "field", name) -> the kind its bare values are read as, or None (text)
KindOf = Callable[[str, str], str | None]


class _Parser:
    def __init__(self, source: str, kind_of: KindOf) -> None:
        self.tokens = _tokens(source)
        self.i = 0
        self.kind_of = kind_of
        self.depth = 0  # 'not' and '(' open around the token at hand

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def keyword(self, *words: str) -> str | None:
        t = self.tok
        if t.kind == "word" and t.text.lower() in words:
            self.i += 1
            return t.text.lower()
        return None

    def symbol(self, text: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == text:
            self.i += 1
            return True
        return False

    def parse(self) -> dict[str, Any]:
        tree = self.or_()
        if self.tok.kind != "end":
            raise _error(self.tok.pos, "'and', 'or' or the end of the filter", self.tok.describe())
        return tree

    def or_(self) -> dict[str, Any]:
        items = [self.and_()]
        while self.keyword("or"):
            items.append(self.and_())
        return items[0] if len(items) == 1 else {"or": items}

    def and_(self) -> dict[str, Any]:
        items = [self.unary()]
        while self.keyword("and"):
            items.append(self.unary())
        return items[0] if len(items) == 1 else {"and": items}

    def nest(self, t: Token) -> None:
        """One more level of 'not' or '(' at ``t``: at most the tree's own depth limit, checked
        before recursing (so a deep text is a 400 naming the limit, never a RecursionError)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(t.pos, f"at most {MAX_DEPTH} levels of 'not' and parentheses (a filter nests at "
                         f"most {MAX_DEPTH} deep)", t.describe())

    def unary(self) -> dict[str, Any]:
        t = self.tok
        if self.keyword("not"):
            self.nest(t)
            inner = {"not": self.unary()}
            self.depth -= 1
            return inner
        if self.symbol("("):
            self.nest(t)
            grouped = self.or_()
            if not self.symbol(")"):
                raise _error(self.tok.pos, "')'", self.tok.describe())
            self.depth -= 1
            return grouped
        shorthand = self.shorthand()
        return shorthand if shorthand is not None else self.predicate()

    def shorthand(self) -> dict[str, Any] | None:
        t = self.tok
        word = t.text.lower() if t.kind == "word" else ""
        if word == "in_map" and self.tokens[self.i + 1].kind in ("word", "quoted"):
            after = self.tokens[self.i + 2] if self.i + 2 < len(self.tokens) else self.tokens[-1]
            if after.kind == "word" and after.text.lower() in ("polygon", "box"):
                return self.in_map()
        if word not in ("in_collection", "preset"):
            return None
        after = self.tokens[self.i + 1]  # a word is never the last token (the end is)
        listed = after.kind == "op" and after.text == "(" and word == "in_collection"
        bare = after.kind == "word" and after.text.lower() not in ("in", "not", "exists", "missing",
                                                                   *WORD_OPS)
        operand = after.kind == "string" or listed or bare
        if not operand:
            return None  # a metadata key of that name
        self.i += 1
        target = ("field", "collection")
        if word == "preset":
            return {"preset": self.value(target)}
        if not self.symbol("("):
            return {"in_collection": self.value(target)}
        values = [self.value(target)]
        while self.symbol(","):
            values.append(self.value(target))
        if not self.symbol(")"):
            raise _error(self.tok.pos, "',' or ')'", self.tok.describe())
        return {"in_collection": values}

    def in_map(self) -> dict[str, Any]:
        self.i += 1
        name = self.tok
        self.i += 1
        key = name.text[1:-1] if name.kind == "quoted" else name.text
        shape = self.tok.text.lower()
        self.i += 1
        if not self.symbol("("):
            raise _error(self.tok.pos, f"'(' and the {shape}'s coordinates", self.tok.describe())
        numbers = [self.integer()]
        while self.symbol(","):
            numbers.append(self.integer())
        if not self.symbol(")"):
            raise _error(self.tok.pos, "',' or ')'", self.tok.describe())
        if shape == "box":
            return {"in_map": {"key": key, "box": numbers}}
        if len(numbers) % 2:
            raise _error(name.pos, "a polygon's coordinates in pairs (x, y)", f"{len(numbers)} numbers")
        pairs = [[numbers[i], numbers[i + 1]] for i in range(0, len(numbers), 2)]
        return {"in_map": {"key": key, "polygon": pairs}}

    def integer(self) -> int:
        t = self.tok
        # ASCII digits: str.isdigit() also holds for '²' and other digits int() refuses (a 500)
        if t.kind != "word" or not (t.text.isascii() and t.text.isdigit()):
            raise _error(t.pos, "a grid coordinate (an integer from 0 to 65535)", t.describe())
        self.i += 1
        return int(t.text)

    def target(self) -> tuple[str, str]:
        t = self.tok
        if self.symbol("@"):
            name = self.tok
            if name.kind != "word":
                raise _error(name.pos, "an item field name after '@'", name.describe())
            self.i += 1
            return "field", name.text
        if t.kind == "quoted":
            self.i += 1
            return "key", t.text[1:-1]
        if t.kind == "word" and t.text.lower() not in ("and", "or", "not", "in"):
            self.i += 1
            return "key", t.text
        raise _error(t.pos, "a metadata key, `a quoted key`, @field, 'not' or '('", t.describe())

    def value(self, target: tuple[str, str]) -> Any:
        t = self.tok
        if t.kind == "string":
            self.i += 1
            return _ESCAPE.sub(r"\1", t.text[1:-1])
        if t.kind != "word":
            raise _error(t.pos, "a value", t.describe())
        self.i += 1
        kind = self.kind_of(*target)
        if kind == "number":
            # float() also reads '1_000' and other scripts' digits ('١٢'): a typo such as '1_5'
            # was read as 15.  inf and nan go on to the filter's own refusal (a finite number).
            if not (_NUMBER.fullmatch(t.text) or t.text.lower() in ("inf", "-inf", "+inf", "nan")):
                raise _error(t.pos, f"a number for {target[1]!r}", t.describe())
            number = float(t.text)
            return int(number) if number.is_integer() and "." not in t.text else number
        if kind == "boolean" and t.text.lower() in ("true", "false"):
            return t.text.lower() == "true"
        return t.text

    def predicate(self) -> dict[str, Any]:
        target = self.target()
        head: dict[str, Any] = {target[0]: target[1]}
        t = self.tok
        if t.kind == "op" and t.text in COMPARISONS:
            self.i += 1
            return head | {"op": COMPARISONS[t.text], "value": self.value(target)}
        negated = self.keyword("not") is not None
        if self.keyword("in"):
            if not self.symbol("("):
                raise _error(self.tok.pos, "'(' and a list of values", self.tok.describe())
            values = [self.value(target)]
            while self.symbol(","):
                values.append(self.value(target))
            if not self.symbol(")"):
                raise _error(self.tok.pos, "',' or ')'", self.tok.describe())
            return head | {"op": "not_in" if negated else "in", "value": values}
        if negated:
            raise _error(self.tok.pos, "'in' after 'not'", self.tok.describe())
        word = self.keyword("exists", "missing", *WORD_OPS)
        if word in ("exists", "missing"):
            return head | {"op": word}
        if word is not None:
            return head | {"op": word, "value": self.value(target)}
        raise _error(
            t.pos,
            "an operator (=, !=, <, <=, >, >=, in, not in, exists, missing, " + ", ".join(WORD_OPS) + ")",
            t.describe(),
        )


def compile_text(source: str, kind_of: KindOf) -> dict[str, Any] | None:
    """The JSON filter tree of ``source`` (None when it is blank: everything)."""
    if len(source) > MAX_LENGTH:
        raise _error(MAX_LENGTH, f"a filter of at most {MAX_LENGTH} characters", f"{len(source)} characters")
    if not source.strip():
        return None
    return _Parser(source, kind_of).parse()
