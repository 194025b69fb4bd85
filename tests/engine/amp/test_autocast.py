"""engine.autocast against torch.autocast on the CPU (float16): which dtype each op runs in,
values and gradients of autocast regions, nesting, the decorator and the weight-cast cache."""
import warnings

import numpy as np
import pytest

import engine
import engine.nn.functional as EF
from engine.amp import _policy


def _pair(torch, *arrays):
    """The same arrays as engine tensors and torch tensors (float32 unless given otherwise)."""
    return ([engine.tensor(a) for a in arrays], [torch.tensor(a) for a in arrays])


_T = np.array([0, 3, 1, 2])

# name -> f(E, F, x, y): the same op in engine (E, F = engine, engine.nn.functional) and in
# torch, on two 4x4 positive tensors.
CASES = {
    "matmul": lambda E, F, x, y: x @ y,
    "mm": lambda E, F, x, y: E.mm(x, y),
    "bmm": lambda E, F, x, y: E.bmm(x[None], y[None]),
    "einsum": lambda E, F, x, y: E.einsum("ij,jk->ik", x, y),
    "linear": lambda E, F, x, y: F.linear(x, y),
    "conv2d": lambda E, F, x, y: F.conv2d(x[None, None], y[None, None, :3, :3]),
    "conv1d": lambda E, F, x, y: F.conv1d(x[None], y[:, :, None]),
    "conv_transpose2d": lambda E, F, x, y: F.conv_transpose2d(x[None, None], y[None, None, :2, :2]),
    "sdpa": lambda E, F, x, y: F.scaled_dot_product_attention(x[None], y[None], x[None]),
    "exp": lambda E, F, x, y: E.exp(x),
    "log": lambda E, F, x, y: E.log(x),
    "pow": lambda E, F, x, y: x ** 2,
    "rdiv": lambda E, F, x, y: 1 / x,
    "sum": lambda E, F, x, y: x.sum(),
    "prod": lambda E, F, x, y: x.prod(),
    "prod_dtype": lambda E, F, x, y: E.prod(x, dtype=E.float64),
    "cumsum": lambda E, F, x, y: E.cumsum(x, 0),
    "softmax": lambda E, F, x, y: E.softmax(x, 0),
    "log_softmax": lambda E, F, x, y: E.log_softmax(x, 0),
    "relu": lambda E, F, x, y: E.relu(x),
    "gelu": lambda E, F, x, y: F.gelu(x),
    "layer_norm": lambda E, F, x, y: F.layer_norm(x, (4,), E.ones(4), E.zeros(4)),
    "group_norm": lambda E, F, x, y: F.group_norm(x[None], 2, E.ones(4), E.zeros(4)),
    "batch_norm": lambda E, F, x, y: F.batch_norm(x, E.zeros(4), E.ones(4), E.ones(4), E.zeros(4),
                                                  training=True),
    "add_mixed": lambda E, F, x, y: x + y.float(),
    "cat_mixed": lambda E, F, x, y: E.cat([x, y.float()]),
    "cross_entropy": lambda E, F, x, y: F.cross_entropy(x, E.tensor(_T)),
    "nll_loss": lambda E, F, x, y: F.nll_loss(x, E.tensor(_T)),
    "mse_loss": lambda E, F, x, y: F.mse_loss(x, y),
    "l1_loss": lambda E, F, x, y: F.l1_loss(x, y),
    "smooth_l1_loss": lambda E, F, x, y: F.smooth_l1_loss(x, y),
    "huber_loss": lambda E, F, x, y: F.huber_loss(x, y),
    "bce_with_logits": lambda E, F, x, y: F.binary_cross_entropy_with_logits(x, y * 0.1),
    "bce": lambda E, F, x, y: F.binary_cross_entropy(x.sigmoid(), y * 0.1),
    "kl_div": lambda E, F, x, y: F.kl_div(x, y, reduction="batchmean"),
    "poisson_nll_loss": lambda E, F, x, y: F.poisson_nll_loss(x, y),
    "soft_margin_loss": lambda E, F, x, y: F.soft_margin_loss(x, y),
    "multi_margin_loss": lambda E, F, x, y: F.multi_margin_loss(x, E.tensor(_T)),
    "hinge_embedding_loss": lambda E, F, x, y: F.hinge_embedding_loss(x, y),
    "margin_ranking_loss": lambda E, F, x, y: F.margin_ranking_loss(x, y, x),
    "cosine_embedding_loss": lambda E, F, x, y: F.cosine_embedding_loss(x, y, E.ones(4)),
}


@pytest.mark.parametrize("input_dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", list(CASES))
def test_op_dtype_matches_torch_cpu_autocast(torch, name, input_dtype):
    """Each op's output dtype under autocast("cpu", float16) is torch's, for float32 and
    float16 inputs (low-precision ops, float32 ops, promotion and the rest)."""
    fn = CASES[name]
    rng = np.random.default_rng(1)
    a = (rng.random((4, 4)) + 0.5).astype(input_dtype)
    b = (rng.random((4, 4)) + 0.5).astype(input_dtype)
    (ex, ey), (tx, ty) = _pair(torch, a, b)
    with torch.autocast("cpu", dtype=torch.float16):
        want = fn(torch, torch.nn.functional, tx, ty).dtype
    with engine.autocast("cpu", dtype=engine.float16):
        got = fn(engine, EF, ex, ey).dtype
    assert got.name == str(want).removeprefix("torch."), (name, input_dtype)


def test_float64_is_not_eligible(torch):
    a = np.eye(3)
    with engine.autocast("cpu"):
        assert (engine.tensor(a) @ engine.tensor(a)).dtype is engine.float64
    with torch.autocast("cpu", dtype=torch.float16):
        assert (torch.tensor(a) @ torch.tensor(a)).dtype is torch.float64


def _mlp_step(E, F, x, t, w1, b1, w2, b2, autocast):
    params = [E.tensor(v, requires_grad=True) for v in (w1, b1, w2, b2)]
    with autocast:
        h = F.relu(F.linear(E.tensor(x), params[0], params[1]))
        logits = F.linear(h, params[2], params[3])
        loss = F.cross_entropy(logits, E.tensor(t))
    loss.backward()
    return h, logits, loss, params


def test_mlp_forward_and_backward_match_torch(torch):
    """Values and gradients of an autocast region (linear in float16, the loss in float32),
    and backward in the forward's dtypes: float32 weights get float32 gradients."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 20)).astype(np.float32)
    t = rng.integers(0, 5, 16)
    w1 = (rng.standard_normal((32, 20)) * 0.2).astype(np.float32)
    b1 = (rng.standard_normal(32) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((5, 32)) * 0.2).astype(np.float32)
    b2 = (rng.standard_normal(5) * 0.1).astype(np.float32)
    eh, el, eloss, ep = _mlp_step(engine, EF, x, t, w1, b1, w2, b2, engine.autocast("cpu", dtype=engine.float16))
    th, tl, tloss, tp = _mlp_step(torch, torch.nn.functional, x, t, w1, b1, w2, b2,
                                  torch.autocast("cpu", dtype=torch.float16))
    assert (eh.dtype, el.dtype, eloss.dtype) == (engine.float16, engine.float16, engine.float32)
    assert (th.dtype, tl.dtype, tloss.dtype) == (torch.float16, torch.float16, torch.float32)
    np.testing.assert_allclose(el.detach().numpy().astype(np.float32), tl.detach().float().numpy(),
                               rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(eloss.item(), tloss.item(), rtol=1e-3)
    for e, tt in zip(ep, tp):
        assert e.grad.dtype is engine.float32 and tt.grad.dtype is torch.float32
        np.testing.assert_allclose(e.grad.numpy(), tt.grad.numpy(), rtol=5e-3, atol=5e-4)


def test_conv_batchnorm_block_matches_torch(torch):
    """conv (float16) -> BatchNorm with float32 parameters (float16 out) -> relu -> mean."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((6, 3, 3, 3)) * 0.3).astype(np.float32)
    out = {}
    for E, F, ac in ((engine, EF, engine.autocast("cpu")), (torch, torch.nn.functional,
                                                             torch.autocast("cpu", dtype=torch.float16))):
        wt = E.tensor(w, requires_grad=True)
        g, b = E.ones(6, requires_grad=True), E.zeros(6, requires_grad=True)
        rm, rv = E.zeros(6), E.ones(6)
        with ac:
            y = F.relu(F.batch_norm(F.conv2d(E.tensor(x), wt, padding=1), rm, rv, g, b, training=True))
            loss = y.float().mean()
        loss.backward()
        out[E.__name__] = (y, loss, wt.grad, g.grad, rm, rv)
    e, t = out["engine"], out["torch"]
    assert e[0].dtype is engine.float16 and t[0].dtype is torch.float16
    np.testing.assert_allclose(e[1].item(), t[1].item(), rtol=2e-3)
    for a, b in zip(e[2:], t[2:]):
        np.testing.assert_allclose(a.detach().numpy().astype(np.float32), b.detach().numpy(), rtol=2e-2, atol=2e-3)


def test_nesting_disabling_and_decorator():
    x = engine.ones(2, 2)
    assert not engine.amp.is_autocast_enabled("cpu")
    with engine.autocast("cpu"):
        assert engine.amp.is_autocast_enabled("cpu")
        assert (x @ x).dtype is engine.float16
        with engine.autocast("cpu", enabled=False):
            assert not engine.amp.is_autocast_enabled("cpu")
            assert (x @ x).dtype is engine.float32
        assert (x @ x).dtype is engine.float16
    assert not engine.amp.is_autocast_enabled("cpu") and not _policy.ACTIVE
    assert (x @ x).dtype is engine.float32

    @engine.autocast("cpu")
    def f(a):
        return a @ a
    assert f(x).dtype is engine.float16
    assert (x @ x).dtype is engine.float32
    assert engine.amp.autocast is engine.autocast
    assert engine.amp.get_autocast_dtype("cpu") is engine.float16


def test_exception_inside_region_restores_state():
    with pytest.raises(ValueError), engine.autocast("cpu"):
        raise ValueError("boom")
    assert not engine.amp.is_autocast_enabled("cpu") and not _policy.ACTIVE


def test_weight_cast_cached_within_region_and_cleared_after(torch):
    """A weight used twice in one region is cast once (one shared node, both gradient
    contributions reach it); leaving the outermost region empties the cache."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    ew = engine.tensor(w, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    with engine.autocast("cpu"):
        e1 = engine.tensor(x) @ ew
        e2 = e1 @ ew
        assert len(_policy.state.cache) == 1
        with engine.autocast("cpu"):
            pass
        assert len(_policy.state.cache) == 1  # an inner region's exit keeps it
    assert len(_policy.state.cache) == 0
    with torch.autocast("cpu", dtype=torch.float16):
        t2 = (torch.tensor(x) @ tw) @ tw
    e2.float().sum().backward()
    t2.float().sum().backward()
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), rtol=5e-3, atol=5e-3)


def test_unsupported_requests():
    with pytest.raises(RuntimeError, match="unsupported autocast device_type"):
        engine.autocast("tpu")
    with pytest.raises(TypeError, match="bfloat16"):
        engine.autocast("cpu", dtype="bfloat16")
    with pytest.warns(UserWarning, match="not supported"):
        ac = engine.autocast("cpu", dtype=engine.float64)
    with ac:
        assert (engine.ones(2, 2) @ engine.ones(2, 2)).dtype is engine.float32


@pytest.mark.skipif(engine.cuda.is_available(), reason="checks the no-GPU fallback")
def test_cuda_autocast_without_gpu_warns_and_is_off():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        ac = engine.autocast("cuda")
    with ac:
        assert not engine.amp.is_autocast_enabled("cuda")


def test_cuda_lists_follow_torch_reference():
    """The CUDA policy has torch's documented members (autocast op reference)."""
    for op in ("matmul", "mm", "bmm", "baddbmm", "addmm", "linear", "conv2d", "mv", "lstm_cell"):
        assert op in _policy.LOWER["cuda"]
    for op in ("softmax", "log_softmax", "layer_norm", "group_norm", "exp", "log", "pow", "sum",
               "cumsum", "prod", "cross_entropy", "nll_loss", "mse_loss", "norm", "rsqrt"):
        assert op in _policy.FP32["cuda"]
    assert not _policy.LOWER["cuda"] & _policy.FP32["cuda"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert engine.amp.is_autocast_available("cuda")


def _cuda_torch(torch):
    if not engine.cuda.is_available():
        pytest.skip("needs a CUDA GPU with cupy")
    if not torch.cuda.is_available():
        pytest.skip("needs torch with CUDA as the oracle")


@pytest.mark.gpu
@pytest.mark.parametrize("input_dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", list(CASES))
def test_op_dtype_matches_torch_cuda_autocast(torch, name, input_dtype):
    """The CUDA lists: each op's dtype under autocast("cuda") is torch's on its GPU (an op
    torch refuses under CUDA autocast, binary_cross_entropy, is refused here too)."""
    _cuda_torch(torch)
    fn = CASES[name]
    rng = np.random.default_rng(1)
    a = (rng.random((4, 4)) + 0.5).astype(input_dtype)
    b = (rng.random((4, 4)) + 0.5).astype(input_dtype)
    ex, ey = engine.tensor(a, device="cuda"), engine.tensor(b, device="cuda")
    tx, ty = torch.tensor(a, device="cuda"), torch.tensor(b, device="cuda")
    try:
        with torch.autocast("cuda", dtype=torch.float16):
            want = str(fn(_OnCuda(torch), torch.nn.functional, tx, ty).dtype).removeprefix("torch.")
    except RuntimeError as exc:
        with pytest.raises(RuntimeError), engine.autocast("cuda"):
            fn(_OnCuda(engine), EF, ex, ey)
        assert "autocast" in str(exc)
        return
    with engine.autocast("cuda", dtype=engine.float16):
        got = fn(_OnCuda(engine), EF, ex, ey).dtype.name
    assert got == want, (name, input_dtype)


class _OnCuda:
    """A module proxy whose tensor constructors make CUDA tensors (for the cases' constants)."""

    def __init__(self, mod):
        self._m = mod

    def __getattr__(self, name):
        f = getattr(self._m, name)
        if name in ("ones", "zeros", "tensor"):
            return lambda *a, **k: f(*a, **{**k, "device": "cuda"})
        return f


@pytest.mark.gpu
def test_cuda_mlp_step_matches_torch_cuda(torch):
    """A float16 autocast step on the GPU: loss and float32 weight gradients close to torch's."""
    _cuda_torch(torch)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 32)).astype(np.float32)
    t = rng.integers(0, 10, 64)
    w1 = (rng.standard_normal((64, 32)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((10, 64)) * 0.2).astype(np.float32)
    res = {}
    for E, F, ac in ((engine, EF, engine.autocast("cuda")),
                     (torch, torch.nn.functional, torch.autocast("cuda", dtype=torch.float16))):
        a, b = (E.tensor(w, device="cuda", requires_grad=True) for w in (w1, w2))
        with ac:
            loss = F.cross_entropy(F.linear(F.gelu(F.linear(E.tensor(x, device="cuda"), a)), b),
                                   E.tensor(t, device="cuda"))
        loss.backward()
        res[E.__name__] = (loss.item(), a.grad.cpu().numpy(), b.grad.cpu().numpy())
    e, tt = res["engine"], res["torch"]
    np.testing.assert_allclose(e[0], tt[0], rtol=2e-3)
    for x1, x2 in zip(e[1:], tt[1:]):
        np.testing.assert_allclose(x1, x2, rtol=2e-2, atol=2e-3)


def test_transformer_encoder_layer_matches_torch(torch):
    """A TransformerEncoderLayer under CPU autocast: projections and attention in float16, the
    residual sums and LayerNorms as torch's promotion makes them; output and gradients."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 6, 16)).astype(np.float32)
    engine.manual_seed(0)
    e_layer = engine.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    t_layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    t_layer.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in e_layer.state_dict().items()})
    ex = engine.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    with engine.autocast("cpu"):
        ey = e_layer(ex)
    with torch.autocast("cpu", dtype=torch.float16):
        ty = t_layer(tx)
    assert ey.dtype.name == str(ty.dtype).removeprefix("torch.")
    np.testing.assert_allclose(ey.detach().numpy().astype(np.float32), ty.detach().float().numpy(),
                               rtol=1e-2, atol=1e-2)
    ey.float().sum().backward()
    ty.float().sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=2e-2, atol=2e-2)
    ew = dict(e_layer.named_parameters())["linear1.weight"].grad.numpy()
    np.testing.assert_allclose(ew, t_layer.linear1.weight.grad.numpy(), rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(engine.cuda.is_available(), reason="checks the no-GPU fallback")
def test_torch_cuda_amp_spellings():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        ac = engine.cuda.amp.autocast()
    assert isinstance(ac, engine.autocast) and ac.device == "cuda"
    with pytest.warns(UserWarning, match="CUDA is not available"):
        s = engine.cuda.amp.GradScaler(init_scale=8.0)
    assert isinstance(s, engine.amp.GradScaler) and not s.is_enabled()


def _scaled_matmul(mod, amp, cast_inputs):
    """A custom Function (x @ w) * 2 that records, in forward and backward, the dtype it saw
    and whether autocast was on."""
    seen = []

    class F(mod.autograd.Function):
        @staticmethod
        @amp.custom_fwd(device_type="cpu", cast_inputs=cast_inputs)
        def forward(ctx, x, w):
            seen.append(("fwd", str(x.dtype).split(".")[-1], amp.is_autocast_enabled("cpu")
                         if mod is engine else mod.is_autocast_enabled("cpu")))
            ctx.save_for_backward(x, w)
            return (x @ w) * 2

        @staticmethod
        @amp.custom_bwd(device_type="cpu")
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            on = amp.is_autocast_enabled("cpu") if mod is engine else mod.is_autocast_enabled("cpu")
            seen.append(("bwd", str((g @ w.t()).dtype).split(".")[-1], on))
            return (g @ w.t()) * 2, (x.t() @ g) * 2
    return F, seen


@pytest.mark.parametrize("cast_inputs", [None, "float32"])
def test_custom_fwd_and_bwd_follow_torch(torch, cast_inputs):
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    out = {}
    for mod, amp, ac in ((engine, engine.amp, lambda: engine.autocast("cpu")),
                         (torch, torch.amp, lambda: torch.autocast("cpu", dtype=torch.float16))):
        ci = None if cast_inputs is None else getattr(mod, cast_inputs)
        Fn, seen = _scaled_matmul(mod, amp, ci)
        xt, wt = mod.tensor(x, requires_grad=True), mod.tensor(w, requires_grad=True)
        with ac():
            y = Fn.apply(xt, wt)
        y.float().sum().backward()
        out[mod.__name__] = (seen, str(y.dtype).split(".")[-1], xt.grad.numpy())
    e, t = out["engine"], out["torch"]
    assert e[0] == t[0] and e[1] == t[1]
    np.testing.assert_allclose(e[2], t[2], rtol=1e-2, atol=1e-2)
