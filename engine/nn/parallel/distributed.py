"""DistributedDataParallel (torch.nn.parallel.DistributedDataParallel).

How gradients become ready during backward: engine's autograd runs leaf hooks
only after the whole graph walk, so DDP gives each parameter an identity node
during its forward (the module sees ``p`` through it). That node's backward runs
inside the walk as soon as ``p``'s gradient is complete; it writes the gradient
(plus any ``.grad`` accumulated under ``no_sync``) into the parameter's slot of a
flat bucket and, once every slot of the next bucket in order is filled, launches
an asynchronous all-reduce (AVG) of the bucket. The rest of backward runs while
the communication thread reduces. The parameter's leaf hook, at the end of the
walk, waits for its bucket and hands autograd the averaged gradient, which
becomes ``p.grad``.

Buckets hold parameters in reverse registration order (roughly the order
backward produces them), at most ``bucket_cap_mb`` each, one dtype per bucket,
and are launched strictly in bucket order so every rank issues the same
collectives in the same order.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from engine import distributed as dist
from engine.autograd.function import Function
from engine.backend import xp_of
from engine.nn.module import Module
from engine.tensor import Tensor

__all__ = ["DistributedDataParallel"]


class _Ready(Function):
    """Identity whose backward reports the parameter's gradient to the reducer."""

    @staticmethod
    def forward(ctx: Any, p: Tensor, reducer: _Reducer, index: int) -> Tensor:
        ctx.reducer, ctx.index = reducer, index
        return Tensor._wrap(p._data)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple:
        ctx.reducer.mark_ready(ctx.index, g)
        return g, None, None


class _Bucket:
    def __init__(self, indices: list[int], params: list[Tensor]) -> None:
        self.indices = indices
        xp = xp_of(params[0]._data)
        self.offsets: dict[int, tuple[int, int]] = {}
        n = 0
        for i, p in zip(indices, params):
            self.offsets[i] = (n, n + p._data.size)
            n += p._data.size
        self.flat = xp.zeros(n, dtype=params[0]._data.dtype)
        self.pending = 0
        self.work: dist.Work | None = None

    def slot(self, i: int, shape: tuple) -> Any:
        a, b = self.offsets[i]
        return self.flat[a:b].reshape(shape)


class _Reducer:
    """Bucketed, overlapped gradient averaging for one DistributedDataParallel."""

    def __init__(self, params: list[Tensor], bucket_cap_bytes: int, world_size: int) -> None:
        self.params = params
        self.world_size = world_size
        self.buckets: list[_Bucket] = []
        self.bucket_of: dict[int, _Bucket] = {}
        order = list(range(len(params)))[::-1]
        cur: list[int] = []
        size = 0
        for i in order:
            p = params[i]
            if cur and (size + p._data.nbytes > bucket_cap_bytes or p._data.dtype != params[cur[0]]._data.dtype
                        or type(p._data) is not type(params[cur[0]]._data)):
                self._add_bucket(cur)
                cur, size = [], 0
            cur.append(i)
            size += p._data.nbytes
        if cur:
            self._add_bucket(cur)
        self.active = False
        self.ready: set[int] = set()
        self.next_bucket = 0
        self.hooks_left = 0
        self.find_unused = False

    def _add_bucket(self, idx: list[int]) -> None:
        b = _Bucket(idx, [self.params[i] for i in idx])
        self.buckets.append(b)
        for i in idx:
            self.bucket_of[i] = b

    def prepare(self, used: set[int] | None) -> None:
        """Called by forward when this iteration syncs; ``used`` (find_unused_parameters) or None."""
        if self.active and self.ready:
            raise RuntimeError(
                "Expected to have finished reduction in the prior iteration before starting a new one. "
                "This error indicates that your module has parameters that were not used in producing "
                "loss. You can enable unused parameter detection by passing the keyword argument "
                "`find_unused_parameters=True` to `torch.nn.parallel.DistributedDataParallel`.")
        self.active = True
        self.ready = set()
        self.seen: dict[int, Tensor] = {}
        self.next_bucket = 0
        self.hooks_left = 0
        for b in self.buckets:
            b.pending = len(b.indices)
            b.work = None
        self.unused: list[int] = []
        if used is not None:
            self.unused = [i for i in range(len(self.params)) if i not in used]
            for i in self.unused:
                p = self.params[i]
                b = self.bucket_of[i]
                s = b.slot(i, p._data.shape)
                s[...] = 0 if p.grad is None else p.grad._data
                self._ready(i)

    def mark_ready(self, i: int, g: Tensor) -> None:
        if not self.active:
            return
        if i in self.ready:
            raise RuntimeError("DistributedDataParallel: a parameter got its gradient twice in one backward "
                               "(reentrant backward or a module used twice is not supported)")
        p = self.params[i]
        s = self.bucket_of[i].slot(i, p._data.shape)
        if p.grad is not None:  # accumulated under no_sync: averaged together with this step's
            xp_of(s).add(p.grad._data, g._data, out=s)
        else:
            s[...] = g._data
        self.hooks_left += 1
        self.seen[i] = g
        self._ready(i)

    def _ready(self, i: int) -> None:
        self.ready.add(i)
        self.bucket_of[i].pending -= 1
        while self.next_bucket < len(self.buckets) and self.buckets[self.next_bucket].pending == 0:
            b = self.buckets[self.next_bucket]
            b.work = dist.all_reduce(b.flat, dist.ReduceOp.AVG if b.flat.dtype.kind in "fc" else dist.ReduceOp.SUM,
                                     async_op=True)
            self.next_bucket += 1

    def leaf_hook(self, i: int, g: Tensor) -> Tensor | None:
        """At the end of backward: ``p.grad`` becomes the bucket's averaged slot."""
        if not self.active or i not in self.ready:
            return None
        b = self.bucket_of[i]
        if b.work is None:
            raise RuntimeError(
                "DistributedDataParallel: some parameters did not receive gradients in this backward, so their "
                "bucket could not be reduced; pass find_unused_parameters=True (missing: "
                f"{sorted(j for j in b.indices if j not in self.ready)})")
        b.work.wait()
        if g is not self.seen.pop(i, None):
            raise RuntimeError(
                f"DistributedDataParallel: parameter {i} also received a gradient outside the DDP forward "
                "(used directly in the loss, or changed by an earlier hook); that part would not be averaged")
        p = self.params[i]
        p.grad = None  # autograd then takes the returned gradient as .grad (a copy)
        self.hooks_left -= 1
        out = Tensor._wrap(b.slot(i, p._data.shape).copy())
        if self.hooks_left == 0:
            self._finish()
        return out

    def _finish(self) -> None:
        for i in self.unused:  # no leaf hook runs for them: set their averaged grads here
            b = self.bucket_of[i]
            b.work.wait()
            p = self.params[i]
            p.grad = Tensor._wrap(b.slot(i, p._data.shape).copy())
        self.active = False
        self.ready = set()


def _tensors(x: Any) -> Iterator[Tensor]:
    if isinstance(x, Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)


def _reachable_nodes(outputs: Any) -> set[int]:
    seen: set[int] = set()
    stack = [t.grad_fn for t in _tensors(outputs) if t.grad_fn is not None]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        for t in n.inputs:
            if t is not None and t.grad_fn is not None and id(t.grad_fn) not in seen:
                stack.append(t.grad_fn)
    return seen


class DistributedDataParallel(Module):
    """Data parallelism: every rank runs ``module`` on its own batch; gradients are averaged.

    Args follow torch: ``module``, ``device_ids``/``output_device``/``dim`` (accepted, one
    device per process), ``broadcast_buffers`` (rank 0's buffers at every forward),
    ``process_group`` (only the default group), ``bucket_cap_mb`` (25), and
    ``find_unused_parameters``. Rank 0's parameters and buffers are broadcast at
    construction. ``state_dict`` keys start with ``module.`` as in torch.
    """

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group: Any = None, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False) -> None:
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("Default process group has not been initialized, please make sure to call "
                               "init_process_group.")
        self.module = module
        self.device_ids = device_ids
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.bucket_cap_mb = 25.0 if bucket_cap_mb is None else bucket_cap_mb
        self.require_backward_grad_sync = True
        self.world_size = dist.get_world_size()
        self._sync_module_states()
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._param_names = [n for n, _ in named]
        params = [p for _, p in named]
        self._owners = self._param_owners(module, params)
        self.reducer = _Reducer(params, int(self.bucket_cap_mb * (1 << 20)), self.world_size)
        self._hook_handles = [p.register_hook(lambda g, i=i: self.reducer.leaf_hook(i, g))
                              for i, p in enumerate(params)]

    @staticmethod
    def _param_owners(module: Module, params: list[Tensor]) -> list[list[tuple[Module, str]]]:
        """For each parameter, every (submodule, attribute name) that holds it (shared weights too)."""
        index = {id(p): i for i, p in enumerate(params)}
        owners: list[list[tuple[Module, str]]] = [[] for _ in params]
        for m in module.modules():
            for name, p in m._parameters.items():
                if p is not None and id(p) in index:
                    owners[index[id(p)]].append((m, name))
        return owners

    def _sync_module_states(self) -> None:
        """Rank 0's parameters and buffers to every rank (one collective per tensor)."""
        if self.world_size == 1:
            return
        for p in self.module.parameters():
            dist.broadcast(p._data, 0)
        self._sync_buffers()

    def _sync_buffers(self) -> None:
        for b in self.module.buffers():
            dist.broadcast(b._data, 0)

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if self.broadcast_buffers and self.world_size > 1 and self.training:
            self._sync_buffers()
        from engine.autograd.grad_mode import STATE

        if not (self.training and self.require_backward_grad_sync and STATE.enabled):
            return self.module(*inputs, **kwargs)
        red = self.reducer
        views = [_Ready.apply(p, red, i) for i, p in enumerate(red.params)]
        saved = []
        try:
            for i, owners in enumerate(self._owners):
                for m, name in owners:
                    saved.append((m, name, m._parameters[name]))
                    m._parameters[name] = views[i]
            out = self.module(*inputs, **kwargs)
        finally:
            for m, name, p in saved:
                m._parameters[name] = p
        used = None
        if self.find_unused_parameters:
            reach = _reachable_nodes(out)
            used = {i for i, v in enumerate(views) if id(v.grad_fn) in reach}
        red.prepare(used)
        return out

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Forward/backward inside the context accumulate local gradients without communication;
        the first synchronised backward after it averages the accumulated total."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old
