"""Parser for the IR text form (see printer.py). Errors carry line and column.

The parser re-runs type inference on every node and checks it against the type
written on the binder, so a parsed graph is well typed.
"""
from __future__ import annotations

import re

import numpy as np

from .graph import Graph, Value
from .opdef import OPS, OpTypeError
from .types import DType, Poly, TensorType


class ParseError(ValueError):
    def __init__(self, msg: str, line: int, col: int, src_line: str = ""):
        self.msg, self.line, self.col = msg, line, col
        text = f"line {line}, column {col}: {msg}"
        if src_line:
            text += f"\n  {src_line}\n  {' ' * (col - 1)}^"
        super().__init__(text)


_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|\#[^\n]*)
  | (?P<nl>\n)
  | (?P<value>%[A-Za-z0-9_.]+)
  | (?P<global>@[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<arrow>->)
  | (?P<larrow><-)
  | (?P<num>[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+(?:[eE][-+]?\d+)?|\d+)|-inf\b)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<punct>[(){}\[\],:=<^*])
""", re.VERBOSE)


class _Tok:
    __slots__ = ("kind", "text", "line", "col")

    def __init__(self, kind, text, line, col):
        self.kind, self.text, self.line, self.col = kind, text, line, col

    def __repr__(self):
        return f"{self.kind}:{self.text!r}"


def _lex(src: str):
    toks, line, lstart, pos = [], 1, 0, 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise ParseError(f"unexpected character {src[pos]!r}", line, pos - lstart + 1,
                             src.splitlines()[line - 1] if src.splitlines() else "")
        kind = m.lastgroup
        if kind == "nl":
            line += 1
            lstart = m.end()
        elif kind != "ws":
            toks.append(_Tok(kind, m.group(), line, pos - lstart + 1))
        pos = m.end()
    toks.append(_Tok("eof", "", line, pos - lstart + 1))
    return toks


class _Parser:
    def __init__(self, src: str):
        self.lines = src.splitlines()
        self.toks = _lex(src)
        self.i = 0

    # -- token helpers ----------------------------------------------------------------
    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg, tok=None):
        tok = tok or self.peek()
        src = self.lines[tok.line - 1] if 0 < tok.line <= len(self.lines) else ""
        return ParseError(msg, tok.line, tok.col, src)

    def expect(self, text=None, kind=None) -> _Tok:
        t = self.peek()
        if (text is not None and t.text != text) or (kind is not None and t.kind != kind):
            want = repr(text) if text is not None else kind
            got = repr(t.text) if t.kind != "eof" else "end of input"
            raise self.error(f"expected {want}, got {got}")
        return self.next()

    def accept(self, text) -> bool:
        if self.peek().text == text and self.peek().kind in ("punct", "ident", "arrow"):
            self.i += 1
            return True
        return False

    # -- grammar ----------------------------------------------------------------------
    def type(self) -> TensorType:
        t = self.expect(kind="ident")
        try:
            dt = DType.parse(t.text)
        except ValueError as e:
            raise self.error(str(e), t) from None
        self.expect("[")
        dims = []
        if not self.accept("]"):
            while True:
                d = self.next()
                if d.kind == "num" and re.fullmatch(r"\d+", d.text):
                    dims.append(int(d.text))
                elif d.kind == "ident":
                    dims.append(d.text)
                else:
                    raise self.error(f"expected a dimension (int or symbol), got {d.text!r}", d)
                if self.accept("]"):
                    break
                self.expect(",")
        return TensorType(tuple(dims), dt)

    def attr_value(self):
        t = self.peek()
        if t.kind == "num":
            self.next()
            if re.fullmatch(r"[-+]?\d+", t.text):
                return int(t.text)
            return float(t.text)
        if t.kind == "ident":
            self.next()
            if t.text in ("true", "false"):
                return t.text == "true"
            if t.text in ("inf", "nan"):
                return float(t.text)
            return t.text  # a symbol (shape attrs) or a dtype name
        if t.kind == "str":
            self.next()
            return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), t.text[1:-1])
        if self.accept("["):
            items = []
            if not self.accept("]"):
                while True:
                    items.append(self.attr_value())
                    if self.accept("]"):
                        break
                    self.expect(",")
            return items
        raise self.error(f"expected an attribute value, got {t.text!r}")

    def use(self, env) -> Value:
        t = self.expect(kind="value")
        if t.text not in env:
            raise self.error(f"use of undefined value {t.text}", t)
        return env[t.text]

    def define(self, env, tok):
        if tok.text in env:
            raise self.error(f"value {tok.text} is defined twice", tok)

    def inputs(self, g: Graph, env: dict):
        """``(%a: T, %b: T, ...)``: the inputs of a graph or a region."""
        self.expect("(")
        if self.accept(")"):
            return
        while True:
            vt = self.expect(kind="value")
            self.define(env, vt)
            self.expect(":")
            t = self.type()
            try:
                env[vt.text] = g.add_input(vt.text[1:], t)
            except ValueError as e:
                raise self.error(str(e), vt) from None
            if self.accept(")"):
                return
            self.expect(",")

    def graph(self) -> Graph:
        self.expect("graph")
        name = self.expect(kind="global").text[1:]
        g = Graph(name)
        env: dict = {}
        self.inputs(g, env)
        self.expect(kind="arrow")
        ret_types = []
        if self.accept("("):
            while True:
                ret_types.append(self.type())
                if self.accept(")"):
                    break
                self.expect(",")
        else:
            ret_types.append(self.type())
        self.expect("{")
        while True:
            t = self.peek()
            if t.kind == "ident" and t.text == "param":
                self.next()
                vt = self.expect(kind="value")
                self.define(env, vt)
                self.expect(":")
                try:
                    env[vt.text] = g.add_param(vt.text[1:], type=self.type())
                except ValueError as e:
                    raise self.error(str(e), vt) from None
            elif t.kind == "ident" and t.text == "return":
                self.next()
                rtok = self.peek()
                outs = [self.use(env)]
                while self.accept(","):
                    outs.append(self.use(env))
                got = [v.type for v in outs]
                if got != ret_types:
                    raise self.error(f"return types {', '.join(map(str, got))} do not match the "
                                     f"signature's {', '.join(map(str, ret_types))}", rtok)
                g.set_outputs(outs)
                self.expect("}")
                break
            elif t.kind == "value" and self.toks[self.i + 1].kind == "larrow":
                pt = self.next()
                self.next()
                p = env.get(pt.text)
                if p is None or p.kind != "param":
                    raise self.error(f"{pt.text} is not a param of this graph (only params are "
                                     f"updated)", pt)
                vt = self.peek()
                try:
                    g.add_update(p, self.use(env))
                except ValueError as e:
                    raise self.error(str(e), vt) from None
            elif t.kind == "value":
                self.node(g, env)
            else:
                got = repr(t.text) if t.kind != "eof" else "end of input"
                raise self.error(f"expected 'param', a node or 'return', got {got}")
        self.expect(kind="eof")
        return g

    def node(self, g: Graph, env):
        binders = []
        while True:
            vt = self.expect(kind="value")
            self.define(env, vt)
            if any(b[0].text == vt.text for b in binders):
                raise self.error(f"value {vt.text} is defined twice", vt)
            self.expect(":")
            ty = self.type()
            at = self.arena_offset() if self.peek().text == "@arena" else None
            binders.append((vt, ty, at))
            if not self.accept(","):
                break
        self.expect("=")
        optok = self.expect(kind="ident")
        if optok.text not in OPS:
            raise self.error(f"unknown op {optok.text!r}", optok)
        op = OPS[optok.text]
        self.expect("(")
        ins = []
        if not self.accept(")"):
            while True:
                ins.append(self.use(env))
                if self.accept(")"):
                    break
                self.expect(",")
        attrs = {}
        if self.peek().text == "{" and self.toks[self.i + 1].text != "^":
            self.next()
            while True:
                at = self.expect(kind="ident")
                if at.text in attrs:
                    raise self.error(f"attribute {at.text} given twice", at)
                self.expect("=")
                attrs[at.text] = (self.attr_value(), at)
                if self.accept("}"):
                    break
                self.expect(",")
        if op.name == "constant" and "value" in attrs and len(binders) == 1:
            v, at = attrs["value"]
            bt = binders[0][1]
            try:
                attrs["value"] = (np.array(v, dtype=bt.dtype.np).reshape(bt.shape), at)
            except (ValueError, TypeError) as e:
                raise self.error(f"constant value does not fit {bt}: {e}", at) from None
        regions = []
        while self.peek().text == "{" and self.toks[self.i + 1].text == "^":
            regions.append(self.region())
        try:
            n = g.make_node(op, ins, {k: v for k, (v, _) in attrs.items()}, tuple(regions))
        except OpTypeError as e:
            raise self.error(str(e), optok) from None
        if len(n.outputs) != len(binders):
            raise self.error(f"{op.name} has {len(n.outputs)} output(s), {len(binders)} written", optok)
        for (vt, ty, at), o in zip(binders, n.outputs):
            if o.type != ty:
                raise self.error(f"type of {vt.text} is written {ty}, but {op.name} gives {o.type}", vt)
            env[vt.text] = o
            if at is not None:
                if g.arena is None:
                    g.arena = {}
                g.arena[o] = at
        g.nodes.append(n)


    def arena_offset(self) -> Poly:
        """``@arena[2048*N+64]``: a memory-plan offset, a sum of terms ``c*sym*...``."""
        self.next()
        self.expect("[")
        terms: dict = {}
        while True:
            t = self.expect(kind="num")
            if not re.fullmatch(r"[-+]?\d+", t.text):
                raise self.error(f"expected an integer coefficient, got {t.text!r}", t)
            syms = []
            while self.accept("*"):
                syms.append(self.expect(kind="ident").text)
            key = tuple(sorted(syms))
            terms[key] = terms.get(key, 0) + int(t.text)
            if self.accept("]"):
                return Poly(terms)
            if self.peek().kind != "num" or self.peek().text[0] not in "+-":
                raise self.error(f"expected '+term', '-term' or ']', got {self.peek().text!r}")

    def region(self) -> Graph:
        """``{ ^(%p0: T, ...): nodes... yield %v, ... }`` -- isolated from above."""
        self.expect("{")
        self.expect("^")
        r = Graph("region")
        env: dict = {}
        self.inputs(r, env)
        self.expect(":")
        while self.peek().kind == "value":
            self.node(r, env)
        yt = self.peek()
        if yt.text != "yield":
            got = repr(yt.text) if yt.kind != "eof" else "end of input"
            raise self.error(f"expected a node or 'yield' in the region, got {got}")
        self.next()
        outs = [self.use(env)]
        while self.accept(","):
            outs.append(self.use(env))
        r.set_outputs(outs)
        self.expect("}")
        return r


def parse(text: str) -> Graph:
    """Parse the IR text form into a Graph (parameter values are not part of the text)."""
    if not isinstance(text, str):
        raise TypeError(f"parse expects the IR text as str, got {type(text).__name__}")
    return _Parser(text).graph()
