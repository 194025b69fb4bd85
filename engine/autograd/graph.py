"""The autograd graph: one Node per op output, and the iterative backward engine.

A Node holds the op's backward function ``fn(grad, out) -> tuple of input grads``,
the input tensors that require grad (``None`` elsewhere), and, for the version
check, the tensors its backward reads.

Buffer ownership (the fast path when ``create_graph`` is off): a backward may
return a raw array instead of a Tensor to say "this array is freshly allocated
and nobody else holds it". The engine then owns it: a second gradient for the
same tensor is added into it in place, and a leaf takes it as ``.grad`` without
a copy. Gradients that were shown to a hook, retained or captured lose
ownership, so user code never sees a buffer change under it. Backward is a Kahn-style walk over the
nodes reachable from the roots: no recursion, so a chain of 100,000 ops is fine.
Gradients are engine Tensors, so running the walk in grad mode (``create_graph``)
records the backward itself and gives higher-order derivatives.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.autograd.grad_mode import STATE

_T: Any = None


def _Tensor() -> type:
    global _T
    if _T is None:
        from engine.tensor import Tensor

        _T = Tensor
    return _T


def _wrap(array: Any) -> Any:
    return _Tensor()._wrap(array)


__all__ = ["Node", "run_backward"]

_FREED_MSG = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)


class Node:
    """The grad_fn of one op output; ``name()`` gives torch's name, e.g. ``MulBackward0``."""

    __slots__ = (
        "__weakref__",
        "_name",
        "fn",
        "freed",
        "inputs",
        "next_nodes",
        "out_version",
        "saved",
        "versions",
    )

    def __init__(self, fn, inputs: tuple, name: str, saved: tuple = (), out_version: int = -1):
        self.fn = fn
        self.inputs = inputs
        # the inputs' nodes now: an in-place op later gives an input tensor a new grad_fn,
        # but this op used the value from before it (torch's edges point at nodes too)
        self.next_nodes = tuple([None if t is None else t.grad_fn for t in inputs])
        self._name = name
        self.saved = saved
        self.versions = tuple([t._vc[0] for t in saved]) if saved else ()
        self.out_version = out_version
        self.freed = False

    def name(self) -> str:
        return self._name

    @property
    def next_functions(self) -> tuple:
        return tuple((None if t is None else (c or _AccumulateGrad(t)), 0)
                     for t, c in zip(self.inputs, self.next_nodes))

    @property
    def saves(self) -> bool:
        return bool(self.saved) or self.out_version != -1

    def __repr__(self) -> str:
        return f"<{self._name} object at {id(self):#x}>"

    def __call__(self, grad: Any, out: Any = None) -> tuple:
        return tuple(g if g is None or isinstance(g, _Tensor()) else _wrap(g)
                     for g in self.fn(grad, out))


class _AccumulateGrad:
    """What next_functions shows for a leaf, as torch does."""

    __slots__ = ("variable",)

    def __init__(self, variable: Any) -> None:
        self.variable = variable

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"  # torch's name() for it

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {id(self):#x}>"


def _check_versions(node: Node, out: Any) -> None:
    for t, v in zip(node.saved, node.versions):
        if t._vc[0] != v:
            _raise_version(t, node, v)
    if node.out_version == -2 or (node.out_version >= 0 and out._vc[0] != node.out_version):
        _raise_version(out, node, node.out_version)


def _raise_version(t: Any, node: Node, expected: int) -> None:
    raise RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: [{t.dtype.name} tensor of shape {list(t.shape)}], which is used "
        f"by {node.name()}, is at version {t._vc[0]}; expected version {expected} instead. "
        "Hint: the operation that failed was simulated by making a copy before modifying."
    )


def _apply_hooks(t: Any, g: Any) -> Any:
    for hook in list(t._hooks.values()):
        r = hook(g)
        if r is not None:
            g = r
    return g


def run_backward(roots: Sequence[Any], root_grads: Sequence[Any], retain_graph: bool,
                 create_graph: bool, inputs: Sequence[Any] | None = None,
                 accumulate: bool = True) -> list | None:
    """Propagate ``root_grads`` from ``roots`` back through the graph.

    With ``accumulate`` the leaf gradients are added into ``.grad`` (restricted to
    ``inputs`` when given); otherwise the gradients of ``inputs`` are returned
    (``None`` for an input the roots do not depend on).
    """
    Tensor = _Tensor()
    deps: dict = {}
    outs: dict = {}
    stack = []
    for r in roots:
        n = r.grad_fn
        if n is not None and n not in deps:
            deps[n] = 0
            outs[n] = r
            stack.append(n)
    while stack:  # count, for each node, the edges that lead into it
        n = stack.pop()
        for t, c in zip(n.inputs, n.next_nodes):
            if c is None:
                continue
            if c in deps:
                deps[c] += 1
            else:
                deps[c] = 1
                outs[c] = t
                stack.append(c)

    want_nodes: dict = {}
    want_leaves: dict = {}
    captured: dict = {}
    if inputs is not None:
        for i, t in enumerate(inputs):
            if t.grad_fn is not None:
                want_nodes.setdefault(t.grad_fn, []).append(i)
            else:
                want_leaves.setdefault(id(t), []).append(i)

    grads: dict = {}
    owned: set = set()  # ids of the gradient Tensors (alive in grads/leaves) the engine owns
    leaves: dict = {}  # id -> [tensor, summed grad]: hooks and accumulation run once per leaf
    prev_mode = STATE.enabled
    STATE.enabled = create_graph
    try:
        for r, g in zip(roots, root_grads):
            n = r.grad_fn
            if n is None:  # the root is itself a leaf
                _collect(leaves, owned, r, g)
            else:
                grads[n] = g if n not in grads else grads[n] + g
        ready = [n for n in outs if deps[n] == 0]
        processed = []
        while ready:
            n = ready.pop()
            g = grads.pop(n, None)
            in_grads = None
            if g is not None:
                owned.discard(id(g))  # the node's backward may pass it on unchanged
                t = outs[n]
                current = t.grad_fn is n  # else an in-place op has since replaced t's node
                if t._hooks and current:
                    g = _apply_hooks(t, g)
                if t._retains_grad and accumulate and current:
                    gd = g if create_graph else g.detach()
                    t.grad = gd if t.grad is None else t.grad + gd
                if n in want_nodes:
                    for i in want_nodes[n]:
                        captured[i] = g
                if n.fn is None:
                    raise RuntimeError(_FREED_MSG)
                if n.saved or n.out_version != -1:
                    _check_versions(n, t)
                in_grads = n.fn(g, t)
                processed.append(n)
            for i, inp in enumerate(n.inputs):
                if inp is None:
                    continue
                gi = None if in_grads is None else in_grads[i]
                if gi is not None and not isinstance(gi, Tensor):
                    gi = _wrap(gi)  # a fresh array from a fast-path backward: ours
                    owned.add(id(gi))
                c = n.next_nodes[i]
                if c is None:
                    if gi is not None:
                        _collect(leaves, owned, inp, gi)
                    continue
                if gi is not None:
                    prev = grads.get(c)
                    grads[c] = gi if prev is None else _accumulate(owned, prev, gi)
                d = deps[c] - 1
                deps[c] = d
                if d == 0:
                    ready.append(c)
        for t, g in leaves.values():
            _leaf(t, g, accumulate, want_leaves, captured, create_graph, id(g) in owned)
        if not retain_graph:
            for n in processed:
                if n.saved or n.out_version != -1:
                    n.fn = None  # drops the closure and with it the saved arrays
                    n.saved = ()
                n.freed = True
    finally:
        STATE.enabled = prev_mode
    if inputs is None:
        return None
    return [captured.get(i) for i in range(len(inputs))]


def _writeable(a: Any) -> bool:
    """numpy's writeable flag; cupy arrays have none and are always writeable."""
    return getattr(a.flags, "writeable", True)


def _accumulate(owned: set, prev: Any, g: Any) -> Any:
    """prev + g: in place into ``prev`` when the engine owns it, else into a fresh owned buffer."""
    if STATE.enabled or prev._rg or g._rg:  # create_graph: record the sum
        return prev + g
    pd, gd = prev._data, g._data
    if id(prev) in owned and pd.shape == gd.shape and pd.dtype == gd.dtype:
        pd += gd
        owned.discard(id(g))
        return prev
    if id(g) in owned and pd.shape == gd.shape and pd.dtype == gd.dtype:
        gd += pd
        return g
    owned.discard(id(g))
    r = _wrap(pd + gd)
    owned.add(id(r))
    return r


def _collect(leaves: dict, owned: set, t: Any, g: Any) -> None:
    entry = leaves.get(id(t))
    if entry is None:
        leaves[id(t)] = [t, g]
    else:
        entry[1] = _accumulate(owned, entry[1], g)


def _leaf(t: Any, g: Any, accumulate: bool, want: dict, captured: dict, create_graph: bool,
          own: bool = False):
    if t._hooks:
        g = _apply_hooks(t, g)
        own = False
    if want:
        idx = want.get(id(t))
        if idx is not None:
            own = False
            for i in idx:
                captured[i] = g
        if not accumulate or idx is None:
            return
    elif not accumulate:
        return
    if g._data.dtype != t._data.dtype:
        g = g.to(t.dtype)
        own = not create_graph
    if t.grad is None:
        if create_graph:
            t.grad = g
        elif own and _writeable(g._data) and g._data.shape == t._data.shape:
            t.grad = g  # a fresh buffer nobody else holds: no copy
        else:
            t.grad = type(g)._wrap(g._data.copy())
    elif create_graph or t.grad._rg:
        t.grad = t.grad + g
    else:
        gd = t.grad._data
        if gd.shape == g._data.shape and _writeable(gd):
            gd += g._data
        else:
            t.grad = type(g)._wrap(gd + g._data)
