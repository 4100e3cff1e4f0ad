"""Static checks that the analysis code runs on any device, testable without a GPU.

Two rules, checked on the syntax tree of every module under ``unitprobe/methods``,
``unitprobe/pipeline`` and ``unitprobe/model``:

1. **numpy conversions go through the CPU.** ``E.numpy()`` without arguments (a tensor's
   conversion; ``Trace.numpy(site, layer)`` takes arguments and does its own ``.cpu()``) needs
   ``E`` brought to the CPU: reading ``E`` back through method calls, attributes and
   subscripts (``x.detach().cpu().double()[0]``) reaches a ``.cpu()`` call before any
   ``.to(...)`` or ``.cuda(...)``, or reaches a name that every assignment in the same
   function sets to such an expression (``mse = (sse / n).cpu()``; a parameter, a loop
   variable or an unpacked call result is unknown and fails). A GPU tensor has no
   ``.numpy()``.
2. **tensors are made on a device.** A torch factory (``torch.zeros``, ``torch.ones``,
   ``torch.full``, ``torch.empty``, ``torch.arange``, ``torch.tensor``, ``torch.as_tensor``,
   ``torch.randn``, ...) is called with ``device=``: without it the tensor is made on the
   CPU and fails when it meets the model's tensors on a GPU. ``*_like`` and ``x.new_*``
   inherit their device and are always fine.

Exceptions: :data:`CPU_BY_DESIGN` lists, by module, function and rule, code that makes CPU
tensors on purpose, with the reason; :data:`NOT_YET` lists modules not yet device-clean (the
pipeline and the command line run them on a CPU copy of the model). An entry that no longer
breaks a rule must be removed: the lists only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

import unitprobe

PACKAGE = Path(unitprobe.__file__).parent
ROOTS = ("methods", "pipeline", "model")
FACTORIES = frozenset(
    {
        "arange", "as_tensor", "empty", "eye", "from_numpy", "full", "linspace", "ones",
        "rand", "randint", "randn", "randperm", "tensor", "zeros",
    }
)  # fmt: skip
MOVES = frozenset({"to", "cuda"})

#: (module, function, rule) -> why it makes CPU tensors on purpose.
CPU_BY_DESIGN = {
    ("model/lstm.py", "as_tensor", "factory"): "converts and checks, then moves with .to()",
    ("model/planted.py", "planted_lstm", "factory"): "a new network's weights, made on the CPU",
    ("model/train.py", "train", "factory"): "the data stay on the CPU; batches move",
    ("model/train.py", "_tensors", "factory"): "the data stay on the CPU; batches move",
    ("model/train.py", "_epoch", "factory"): "the minibatch order, drawn on the CPU",
    ("model/train.py", "held_out_metrics", "factory"): "scores the returned (CPU) model",
    ("pipeline/nulls.py", "fit_readout", "factory"): "copy_ moves the fit to the readout",
}
#: Modules not yet device-clean (the pipeline and the command line would call them with a CPU
#: copy of the model).
NOT_YET: set[str] = set()


class Violation(NamedTuple):
    module: str
    function: str
    rule: str
    line: int
    code: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} in {self.function}(): {self.rule}: {self.code}"


def modules() -> list[Path]:
    return sorted(
        path
        for root in ROOTS
        for path in (PACKAGE / root).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def _is_torch(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "torch"


def _names(target: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


class _Scan(ast.NodeVisitor):
    """Collects the violations of one module."""

    def __init__(self, module: str, source: str) -> None:
        self.module, self.source = module, source
        self.scopes: list[ast.AST] = []
        self.found: list[Violation] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(node)
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            bare = not node.args and not node.keywords
            if func.attr == "numpy" and bare and not self._on_cpu(func.value, set()):
                self._report("numpy", node)
            device = any(k.arg == "device" for k in node.keywords)
            if func.attr in FACTORIES and _is_torch(func.value) and not device:
                self._report("factory", node)
        self.generic_visit(node)

    def _report(self, rule: str, node: ast.Call) -> None:
        function = self.scopes[0].name if self.scopes else "<module>"
        code = ast.get_source_segment(self.source, node) or ""
        self.found.append(Violation(self.module, function, rule, node.lineno, code))

    def _on_cpu(self, expr: ast.expr, seen: set[str]) -> bool:
        """Whether ``expr`` is read back to a ``.cpu()`` (rule 1)."""
        while True:
            if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
                if expr.func.attr == "cpu":
                    return True
                if expr.func.attr in MOVES:
                    return False
                expr = expr.func.value
            elif isinstance(expr, ast.Attribute | ast.Subscript):
                expr = expr.value
            elif isinstance(expr, ast.Name) and expr.id not in seen:
                values = self._assigned(expr.id)
                seen = seen | {expr.id}
                return bool(values) and all(v is not None and self._on_cpu(v, seen) for v in values)
            else:
                return False

    def _assigned(self, name: str) -> list[ast.expr | None]:
        """Every value ``name`` is given in the innermost function (None: unknown)."""
        scope = self.scopes[-1] if self.scopes else None
        if scope is None:
            return [None]
        if name in {a.arg for a in ast.walk(scope.args) if isinstance(a, ast.arg)}:
            return [None]
        values: list[ast.expr | None] = []
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    values += _matched(target, node.value, name)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
                if name in _names(node.target):
                    values.append(None if isinstance(node, ast.AugAssign) else node.value)
            elif isinstance(node, ast.For | ast.comprehension | ast.withitem):
                target = node.optional_vars if isinstance(node, ast.withitem) else node.target
                if target is not None and name in _names(target):
                    values.append(None)
        return values


def _matched(target: ast.expr, value: ast.expr, name: str) -> list[ast.expr | None]:
    """The values ``target = value`` gives ``name``: a name, or unpacked from a tuple."""
    if isinstance(target, ast.Name):
        return [value] if target.id == name else []
    if isinstance(target, ast.Tuple | ast.List):
        if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts):
            return [v for t, e in zip(target.elts, value.elts, strict=True)
                    for v in _matched(t, e, name)]  # fmt: skip
        return [None] if name in _names(target) else []
    return []


def violations() -> list[Violation]:
    """Every break of the two rules in the scanned modules."""
    found = []
    for path in modules():
        source = path.read_text(encoding="utf-8")
        scan = _Scan(path.relative_to(PACKAGE).as_posix(), source)
        scan.visit(ast.parse(source))
        found += scan.found
    return found


def _key(v: Violation) -> tuple[str, str, str]:
    return (v.module, v.function, v.rule)


def test_numpy_conversions_and_new_tensors_are_device_clean():
    bad = [str(v) for v in violations() if _key(v) not in CPU_BY_DESIGN and v.module not in NOT_YET]
    assert not bad, "not device-clean (see this test's docstring):\n" + "\n".join(bad)


def test_every_exception_is_still_needed():
    found = violations()
    stale = sorted(set(CPU_BY_DESIGN) - {_key(v) for v in found})
    stale += sorted(NOT_YET - {v.module for v in found})
    assert not stale, f"now device-clean, remove from CPU_BY_DESIGN / NOT_YET: {stale}"


def _scan(code: str) -> list[str]:
    scan = _Scan("m.py", code)
    scan.visit(ast.parse(code))
    return [f"{v.function}:{v.rule}" for v in scan.found]


@pytest.mark.parametrize(
    "code",
    [
        "def f(x):\n    return x.detach().cpu().double().numpy()",
        "def f(x):\n    return x.cpu()[0].numpy()",
        "def f(x):\n    y = (x / 2).cpu()\n    return y.numpy(), y[1].numpy()",
        "def f(x):\n    a, b = x.cpu(), x.sum().cpu()\n    return b.numpy()",
        "def f(trace):\n    return trace.numpy('h', 0)",
        "def f(x):\n    return torch.zeros(3, device=x.device)",
        "def f(x):\n    return torch.as_tensor([1], dtype=x.dtype, device=x.device)",
        "def f(x):\n    return torch.zeros_like(x), x.new_zeros(3)",
    ],
)
def test_the_rules_accept_device_clean_code(code):
    assert _scan(code) == []


@pytest.mark.parametrize(
    "code, found",
    [
        ("def f(x):\n    return x.double().numpy()", "f:numpy"),
        ("def f(x):\n    return x.numpy()", "f:numpy"),
        ("def f(x):\n    return x.cpu().to('cuda').numpy()", "f:numpy"),
        ("def f(x):\n    y = x.cpu()\n    y = y + 1\n    return y.numpy()", "f:numpy"),
        ("def f(x):\n    a, b = g(x)\n    return a.numpy()", "f:numpy"),
        ("def f(xs):\n    for x in xs:\n        x.numpy()", "f:numpy"),
        ("def f(x):\n    return torch.zeros(3)", "f:factory"),
        ("def f(x):\n    return torch.as_tensor(x, dtype=torch.float64)", "f:factory"),
        ("def f(n):\n    return torch.arange(n).to(n)", "f:factory"),
    ],
)
def test_the_rules_refuse_code_that_fails_on_a_gpu(code, found):
    assert _scan(code) == [found]
