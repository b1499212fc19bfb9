"""Band-math formulas: parsed with :mod:`ast` against a whitelist, compiled once into fused numba kernels.

A formula is a Python expression over band and constant names, numbers,
``+ - * / **``, unary minus, parentheses and the functions in
:data:`FUNCTIONS`. :func:`parse` checks it; :func:`program` lowers one or more
formulas to straight-line statements (a :class:`Program`, small, hashable and
picklable); :func:`compiled` turns a program into a numba kernel. The kernel
computes a formula exactly as numpy evaluates its text on float32 band arrays
and Python float constants (float32 operations, NEP 50 promotion, numpy's
shortcuts for ``** 2``, ``** 0.5``, ``** -1``), so its results are the bits
xarray or spyndex give on the same float32 bands; only other powers, ``exp``
and ``log`` may differ in the last bit (numpy's implementations vs the C
library's).

The kernel's source (``geoproc.kernels.indices.kernel_source``) is written to a
file named by its hash under :func:`cache_dir` and imported from there, so
numba's on-disk cache (``cache=True``) works for generated code as for any
module: a new process, such as a Dask worker, loads the machine code instead of
compiling again. Dask tasks carry the :class:`Program`, never the kernel.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import InvalidArgumentError, shorten
from .kernels.indices import KERNEL_NAME, TEMPLATE_VERSION, kernel_source

__all__ = ["FUNCTIONS", "Formula", "Program", "cache_dir", "compiled", "parse", "program"]

#: Functions a formula may call, and what the kernel calls for them.
FUNCTIONS = {"sqrt": "np.sqrt", "abs": "np.abs", "exp": "np.exp", "log": "np.log"}

#: Longest formula accepted, in characters (the parser recurses on nesting).
MAX_LENGTH = 4000

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_ALLOWED = "numbers, band and constant names, + - * / **, unary minus, parentheses and " + ", ".join(FUNCTIONS)


@dataclass(frozen=True)
class Formula:
    """A checked formula.

    Attributes
    ----------
    text
        The formula as given.
    tree
        Its expression tree (only whitelisted nodes).
    names
        The names it uses, in order of first use.
    """

    text: str
    tree: ast.expr
    names: tuple[str, ...]


_WORDS = {
    "Compare": "a comparison",
    "BoolOp": "and/or",
    "IfExp": "a conditional expression",
    "Attribute": "an attribute",
    "Subscript": "a subscript",
    "Lambda": "a lambda",
    "Constant": "a constant that is not a finite number",
    "Call": "a call",
    "BinOp": "an operator that is not + - * / **",
    "UnaryOp": "an operator that is not unary minus",
}


def _describe(node: ast.AST) -> str:
    word = _WORDS.get(type(node).__name__, type(node).__name__)
    try:
        return f"`{shorten(ast.unparse(node), 40)}` ({word})"
    except Exception:  # operator nodes do not unparse on their own
        return word


def parse(
    text: str,
    known: Callable[[str], bool] | Collection[str] | None = None,
    *,
    what: str = "formula",
    hint: str = "",
) -> Formula:
    """Check a formula and return its tree.

    Parameters
    ----------
    text
        A Python expression such as ``"(N - R) / (N + R)"``.
    known
        Names the formula may use (a collection, or a predicate); ``None`` accepts any name.
    what
        How to refer to the formula in error messages (``"formula of 'NDVI'"``).
    hint
        Appended to the message about unknown names (what names are allowed).

    Raises
    ------
    InvalidArgumentError
        For a syntax error, a construct outside the whitelist, a non-finite number or an unknown name.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(f"the {what} must be a non-empty string such as '(N - R) / (N + R)'")
    if len(text) > MAX_LENGTH:
        raise InvalidArgumentError(f"the {what} is {len(text)} characters long; split it (at most {MAX_LENGTH})")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise InvalidArgumentError(
            f"cannot parse the {what} {shorten(text, 60)!r}: {exc.msg}{where}; "
            "write it as a Python expression such as '(N - R) / (N + R)'"
        ) from None
    functions = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names: dict[str, tuple[int, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp | ast.UnaryOp) and not isinstance(node.op, _NODES):
            raise InvalidArgumentError(f"the {what} uses {_describe(node)}; only {_ALLOWED} are allowed")
        if not isinstance(node, _NODES):
            raise InvalidArgumentError(f"the {what} uses {_describe(node)}; only {_ALLOWED} are allowed")
        if isinstance(node, ast.Name) and id(node) not in functions:
            names[node.id] = min(names.get(node.id, (node.lineno, node.col_offset)), (node.lineno, node.col_offset))
        elif isinstance(node, ast.Constant) and not _finite_number(node.value):
            raise InvalidArgumentError(f"the {what} uses {_describe(node)}; numbers must be finite int or float")
        elif isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords or len(node.args) != 1
        ):
            raise InvalidArgumentError(
                f"the {what} calls `{shorten(ast.unparse(node), 40)}`; "
                f"only {', '.join(FUNCTIONS)} with one argument may be called"
            )
    if known is not None:
        ok = known if callable(known) else known.__contains__
        unknown = [n for n in names if not ok(n)]
        if unknown:
            raise InvalidArgumentError(f"the {what} uses unknown name(s) {', '.join(map(repr, unknown))}{hint}")
    return Formula(text, tree, tuple(sorted(names, key=names.__getitem__)))


_NODES = (ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp, ast.Call, ast.USub, ast.UAdd, *_OPS)


def _finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return abs(float(value)) < float("inf")
    except OverflowError:
        return False


@dataclass(frozen=True)
class Program:
    """Straight-line code of one fused kernel: the input to :func:`compiled`, and what Dask tasks carry.

    Attributes
    ----------
    n_inputs
        Number of input bands.
    outputs
        Per output: statements, result name, inputs used, constant argument names
        (see ``geoproc.kernels.indices.kernel_source``).
    comments
        The formulas in canonical form, for the generated file's docstring.
    """

    n_inputs: int
    outputs: tuple[tuple[tuple[str, ...], str, tuple[int, ...], tuple[str, ...]], ...]
    comments: tuple[str, ...]

    @property
    def source(self) -> str:
        return kernel_source(self.n_inputs, self.outputs, self.comments)


#: ``array ** p`` for these Python-scalar exponents is not a pow call in numpy (``ndarray.__pow__`` takes a
#: shortcut); the kernel takes the same one, so as to give the same bits.
_NUMPY_POWERS = {
    2.0: "{x} * {x}",
    0.5: "np.sqrt({x})",
    -1.0: "np.float32(1.0) / {x}",
    1.0: "{x}",
    0.0: "np.float32(1.0)",
}


class _Lowering:
    """Turns one formula tree into statements ``t{j}_{k} = ...`` that compute it as numpy computes the formula
    on float32 arrays and Python floats: a band's value is float32 and so is every operation on one; a part made
    of numbers and constants only is a float64 (Python) scalar, rounded to float32 where it meets a band (NEP 50).
    Common subexpressions are computed once."""

    def __init__(self, j: int, inputs: Mapping[str, int], constants: Mapping[str, str]):
        self.j, self.inputs, self.constants = j, inputs, constants
        self.statements: list[str] = []
        self.memo: dict[str, str] = {}
        self.used: set[int] = set()

    def emit(self, expr: str) -> str:
        if expr in self.memo:
            return self.memo[expr]
        name = f"t{self.j}_{len(self.statements)}"
        self.statements.append(f"{name} = {expr}")
        self.memo[expr] = name
        return name

    def visit(self, node: ast.expr) -> tuple[str, bool]:
        """The name (or literal) holding the node's value, and whether it is a float32 band value (else a scalar)."""
        if isinstance(node, ast.Name):
            if node.id in self.inputs:
                self.used.add(self.inputs[node.id])
                return f"v{self.inputs[node.id]}", True
            return self.constants[node.id], False
        if isinstance(node, ast.Constant):
            return repr(float(node.value)), False
        if isinstance(node, ast.UnaryOp):
            operand, band = self.visit(node.operand)
            return (self.emit(f"-{operand}") if isinstance(node.op, ast.USub) else operand), band
        if isinstance(node, ast.Call):
            operand, band = self.visit(node.args[0])
            return self.emit(f"{FUNCTIONS[node.func.id]}({operand})"), band
        (left, lband), (right, rband) = self.visit(node.left), self.visit(node.right)
        if not (lband or rband):
            return self.emit(f"{left} {_OPS[type(node.op)]} {right}"), False
        if isinstance(node.op, ast.Pow) and lband and not rband:
            return self._power(left, right, _constant_value(node.right)), True
        left = left if lband else f"np.float32({left})"
        right = right if rband else f"np.float32({right})"
        return self.emit(f"{left} {_OPS[type(node.op)]} {right}"), True

    def _power(self, base: str, exponent: str, literal: float | None) -> str:
        """``band ** scalar`` as numpy does it: a shortcut for the exponents of :data:`_NUMPY_POWERS`, else powf."""
        if literal is not None:
            if literal in _NUMPY_POWERS:
                return self.emit(_NUMPY_POWERS[literal].format(x=base))
            return self.emit(f"{base} ** np.float32({exponent})")
        # a constant exponent: the shortcut is chosen at run time, on its value
        chain = f"{base} ** np.float32({exponent})"
        for value, form in reversed(_NUMPY_POWERS.items()):
            chain = f"({form.format(x=base)} if {exponent} == {value!r} else {chain})"
        return self.emit(chain)


def _constant_value(node: ast.expr) -> float | None:
    """The value of a number written in the formula (``2``, ``-0.5``), else None."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        value = float(node.operand.value)
        return -value if isinstance(node.op, ast.USub) else value
    return None


def program(
    formulas: Sequence[Formula], inputs: Sequence[str] | Mapping[str, int], constants: Sequence[Sequence[str]]
) -> Program:
    """Lower checked formulas to one :class:`Program` computing all of them in one pass.

    Parameters
    ----------
    formulas
        Formulas from :func:`parse`.
    inputs
        Names of the input bands, in the order the kernel takes their arrays, or
        a mapping name -> input position (several names may share one input);
        every other name a formula uses must be in its ``constants``.
    constants
        Per formula, the names of its constants, in the order the kernel takes their values.
    """
    index = dict(inputs) if isinstance(inputs, Mapping) else {name: i for i, name in enumerate(inputs)}
    n_inputs = max(index.values(), default=-1) + 1
    outputs, comments = [], []
    for j, (formula, names) in enumerate(zip(formulas, constants, strict=True)):
        lowering = _Lowering(j, index, {c: f"c{j}_{k}" for k, c in enumerate(names)})
        result, band = lowering.visit(formula.tree)
        if not band:
            raise InvalidArgumentError(f"the formula {formula.text!r} reads no band; use band names such as N and R")
        constant_args = tuple(lowering.constants.values())
        outputs.append((tuple(lowering.statements), result, tuple(sorted(lowering.used)), constant_args))
        comments.append(f"out[{j}] = {ast.unparse(formula.tree)}")
    return Program(n_inputs, tuple(outputs), tuple(comments))


# --- compiling: generated modules on disk, numba's cache beside them ------------------------------------------------

_lock = threading.Lock()


def cache_dir() -> Path:
    """Folder of the generated kernel modules (numba's cache goes to its ``__pycache__``).

    ``$GEOPROC_KERNEL_CACHE`` if set, else ``$NUMBA_CACHE_DIR/geoproc-kernels``, else
    ``$XDG_CACHE_HOME/geoproc/kernels`` (``~/.cache/geoproc/kernels``); a temporary folder if that cannot be written.
    """
    if os.environ.get("GEOPROC_KERNEL_CACHE"):
        return Path(os.environ["GEOPROC_KERNEL_CACHE"])
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]) / "geoproc-kernels"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "geoproc" / "kernels"


def _write_module(folder: Path, name: str, source: str) -> Path:
    """``folder/name.py`` holding ``source``, written once: never rewritten, as numba's cache is keyed on its mtime."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if path.exists() and path.read_text() == source:
        return path
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(source)
    try:
        if path.exists():  # a truncated or foreign file: replace it
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and never replaces what another process wrote meanwhile
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@lru_cache(maxsize=256)
def compiled(prog: Program) -> Callable:
    """The numba kernel of a program, imported from its generated module (written if missing)."""
    source = prog.source
    name = f"geoproc_kernel_{hashlib.sha256(source.encode()).hexdigest()[:20]}_v{TEMPLATE_VERSION}"
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            try:
                path = _write_module(cache_dir(), name, source)
            except OSError:
                user = os.getuid() if hasattr(os, "getuid") else "user"
                path = _write_module(Path(tempfile.gettempdir()) / f"geoproc-kernels-{user}", name, source)
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
    return getattr(module, KERNEL_NAME)
