"""Convolutions: conv1d, conv2d, conv_transpose1d/2d, unfold, fold.

im2col is one strided copy of the padded input into channel-major columns
(G, Cg*kh*kw, N*Ho*Wo), so the forward is one GEMM per group, W (Og, K) @ cols, whose
(O, N, Ho, Wo) result needs only the final NCHW copy (fused with the bias add). The
backward is two GEMMs against the same columns (weight and column gradients) and col2im,
kh*kw slice-adds over the kernel offsets (never a loop over pixels or batch items).
Backward runs on arrays: no double backward.
"""
from __future__ import annotations

from typing import Any

from engine.amp import _policy as _amp
from engine.backend import get_array_module
from engine.nn.functional import _conv_nhwc
from engine.ops._util import attach, needs_grad, wrap
from engine.tensor import Tensor

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "fold", "unfold"]


def _pair(v: Any, n: int = 2) -> tuple:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return tuple(v) * n
        return tuple(int(x) for x in v)
    return (int(v),) * n


def _as_strided(xp: Any, a: Any, shape: tuple, strides: tuple) -> Any:
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def _windows(xp: Any, xpad: Any, k: tuple, stride: tuple, dilation: tuple, out_hw: tuple) -> Any:
    """A view (N, C, kh, kw, Ho, Wo) of the sliding windows of a padded (N, C, Hp, Wp) array."""
    n, c = xpad.shape[:2]
    s = xpad.strides
    return _as_strided(xp, xpad, (n, c, k[0], k[1], out_hw[0], out_hw[1]),
                       (s[0], s[1], s[2] * dilation[0], s[3] * dilation[1], s[2] * stride[0], s[3] * stride[1]))


def _col2im(xp: Any, cols: Any, padded_shape: tuple, k: tuple, stride: tuple, dilation: tuple) -> Any:
    """Adds cols (N, C, kh, kw, Ho, Wo) back into a zero (N, C, Hp, Wp) array (im2col's adjoint)."""
    out = xp.zeros(padded_shape, dtype=cols.dtype)
    ho, wo = cols.shape[4:]
    for i in range(k[0]):
        hs = i * dilation[0]
        for j in range(k[1]):
            ws = j * dilation[1]
            rows = slice(hs, hs + stride[0] * (ho - 1) + 1, stride[0])
            out[:, :, rows, ws:ws + stride[1] * (wo - 1) + 1:stride[1]] += cols[:, :, i, j]
    return out


def _out_size(size: int, k: int, s: int, pad_total: int, d: int) -> int:
    return (size + pad_total - d * (k - 1) - 1) // s + 1


def _resolve_padding(padding: Any, k: tuple, stride: tuple, dilation: tuple) -> tuple:
    """((top, bottom), (left, right)) from an int, a pair, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            out = []
            for kk, d in zip(k, dilation):
                total = d * (kk - 1)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        raise ValueError(f"Invalid padding string {padding!r}, should be one of ('valid', 'same')")
    p = _pair(padding)
    return ((p[0], p[0]), (p[1], p[1]))


def _im2col(xp: Any, x: Any, k: tuple, stride: tuple, pads: tuple, dilation: tuple, groups: int) -> tuple:
    """Channel-major columns (G, Cg*kh*kw, N*Ho*Wo) of (N, C, H, W): one strided copy, no transposes later."""
    n, c, h, wd = x.shape
    ho = _out_size(h, k[0], stride[0], sum(pads[0]), dilation[0])
    wo = _out_size(wd, k[1], stride[1], sum(pads[1]), dilation[1])
    if ho <= 0 or wo <= 0:
        raise RuntimeError(f"Calculated output size ({ho}x{wo}) is too small for input {list(x.shape)}")
    if any(sum(p) for p in pads):
        (pt, pb), (pl, pr) = pads
        xpad = xp.zeros((n, c, h + pt + pb, wd + pl + pr), dtype=x.dtype)
        xpad[:, :, pt:pt + h, pl:pl + wd] = x
    else:
        xpad = x
    win = _windows(xp, xpad, k, stride, dilation, (ho, wo))  # (N, C, kh, kw, Ho, Wo)
    cols = xp.ascontiguousarray(win.transpose(1, 2, 3, 0, 4, 5))  # (C, kh, kw, N, Ho, Wo)
    return cols.reshape(groups, -1, n * ho * wo), xpad.shape, (ho, wo)


def _col2im_cm(xp: Any, gcols: Any, padded_shape: tuple, k: tuple, stride: tuple, dilation: tuple) -> Any:
    """im2col's adjoint for channel-major columns (C, kh, kw, N, Ho, Wo): kh*kw slice-adds into a
    (C, N, Hp, Wp) buffer, returned as its (N, C, Hp, Wp) view."""
    n, c, hp, wp = padded_shape
    out = xp.zeros((c, n, hp, wp), dtype=gcols.dtype)
    ho, wo = gcols.shape[4:]
    for i in range(k[0]):
        hs = i * dilation[0]
        for j in range(k[1]):
            ws = j * dilation[1]
            rows = slice(hs, hs + stride[0] * (ho - 1) + 1, stride[0])
            out[:, :, rows, ws:ws + stride[1] * (wo - 1) + 1:stride[1]] += gcols[:, i, j]
    return out.transpose(1, 0, 2, 3)


def _conv2d_arrays(x: Any, w: Any, stride: tuple, pads: tuple, dilation: tuple, groups: int,
                   bias: Any = None, channels_last: bool = True) -> tuple:
    """Forward on arrays: (output (N, O, Ho, Wo), columns kept for backward, padded input shape).

    With ``channels_last`` and one group the output is a channels-last view and the columns
    a _conv_nhwc.Saved (the input and its rows); else channel-major columns (G, Cg*kh*kw, N*Ho*Wo)."""
    xp = get_array_module(x)
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    if c != cg * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(w.shape)}, expected input{list(x.shape)} "
                           f"to have {cg * groups} channels, but got {c} channels instead")
    if o % groups:
        raise RuntimeError("out_channels must be divisible by groups")
    if channels_last and groups == 1:
        h, wd = x.shape[2:]
        ho = _out_size(h, kh, stride[0], sum(pads[0]), dilation[0])
        wo = _out_size(wd, kw, stride[1], sum(pads[1]), dilation[1])
        if ho <= 0 or wo <= 0:
            raise RuntimeError(f"Calculated output size ({ho}x{wo}) is too small for input {list(x.shape)}")
        res, rows = _conv_nhwc.forward(x, w, bias, stride, pads, dilation, (ho, wo))
        return res, rows, (n, c, h + sum(pads[0]), wd + sum(pads[1]))
    cols, padded_shape, (ho, wo) = _im2col(xp, x, (kh, kw), stride, pads, dilation, groups)
    out = xp.matmul(w.reshape(groups, o // groups, cg * kh * kw), cols)  # (G, Og, N*Ho*Wo) = (O, N, Ho, Wo)
    out = out.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)
    res = xp.empty((n, o, ho, wo), dtype=out.dtype)
    if bias is None:
        res[...] = out
    else:
        xp.add(out, bias.reshape(1, o, 1, 1), out=res)
    return res, cols, padded_shape


def _conv2d_backward(g_out: Any, cols: Any, w: Any, x_shape: tuple, padded_shape: tuple, stride: tuple,
                     pads: tuple, dilation: tuple, groups: int, need_x: bool, need_w: bool) -> tuple:
    """Input and weight gradients: two GEMMs against the columns, then col2im."""
    if isinstance(cols, _conv_nhwc.Saved):  # the channels-last path
        return _conv_nhwc.backward(g_out, cols, w, x_shape, stride, pads, dilation, need_x, need_w)
    xp = get_array_module(g_out)
    n, o, ho, wo = g_out.shape
    _, cg, kh, kw = w.shape
    g, og = groups, o // groups
    gm = xp.ascontiguousarray(g_out.transpose(1, 0, 2, 3)).reshape(g, og, n * ho * wo)
    gw = gx = None
    if need_w:
        kk = cg * kh * kw
        if kk <= 64 and n > 1:
            # a tiny output with a huge inner dimension runs BLAS on one thread: one GEMM per batch item, summed
            a = gm.reshape(g, og, n, ho * wo).transpose(0, 2, 1, 3)  # (G, N, Og, HW)
            b = cols.reshape(g, kk, n, ho * wo).transpose(0, 2, 3, 1)  # (G, N, HW, K)
            gw = xp.matmul(a, b).sum(axis=1).reshape(o, cg, kh, kw)
        else:
            gw = xp.matmul(gm, cols.transpose(0, 2, 1)).reshape(o, cg, kh, kw)  # (G, Og, K)
    if need_x:
        gcols = xp.matmul(w.reshape(g, og, cg * kh * kw).transpose(0, 2, 1), gm)  # (G, K, N*Ho*Wo)
        gcols = gcols.reshape(g * cg, kh, kw, n, ho, wo)
        gpad = _col2im_cm(xp, gcols, padded_shape, (kh, kw), stride, dilation)
        (pt, _), (pl, _) = pads
        gx = gpad[:, :, pt:pt + x_shape[2], pl:pl + x_shape[3]]
    return gx, gw


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation) of (N, C, H, W) or unbatched (C, H, W) input.

    Forward, bias add and backward are one fused op on arrays (no double backward)."""
    if _amp.ACTIVE:
        input, weight, bias = _amp.lower("conv2d", input, weight, bias)
    if input.dim() == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if input.dim() != 4:
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
                           f"{list(input.shape)}")
    stride, dilation = _pair(stride), _pair(dilation)
    k = tuple(weight.shape[2:])
    pads = _resolve_padding(padding, k, stride, dilation)
    x, w = input._data, weight._data
    if x.dtype != w.dtype:
        raise RuntimeError(f"Input type ({x.dtype}) and weight type ({w.dtype}) should be the same")
    b = None if bias is None else bias._data
    out_arr, cols, padded_shape = _conv2d_arrays(x, w, stride, pads, dilation, groups, b)
    out = wrap(out_arr)
    if needs_grad(input, weight, bias):
        x_shape = x.shape

        def backward(g: Tensor, _: Any) -> tuple:
            ga = g._data
            gx, gw = _conv2d_backward(ga, cols, w, x_shape, padded_shape, stride, pads, dilation, groups,
                                      input.requires_grad, weight.requires_grad)
            gb = _conv_nhwc.channel_sum(ga) if bias is not None and bias.requires_grad else None
            return tuple(None if a is None else wrap(a) for a in (gx, gw, gb))

        # the backward rebuilds the rows from the input: an in-place change of it is an error, as in torch
        saved = (input,) if isinstance(cols, _conv_nhwc.Saved) and cols.rows is None else ()
        attach(out, (input, weight, bias), backward, "ConvolutionBackward0", saved=saved)
    return out


def _to_2d_args(stride: Any, padding: Any, dilation: Any) -> tuple:
    pad = padding if isinstance(padding, str) else (0, _pair(padding, 1)[0])
    return (1, _pair(stride, 1)[0]), pad, (1, _pair(dilation, 1)[0])


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """1-D convolution of (N, C, L) or (C, L): conv2d over a height-1 image."""
    unbatched = input.dim() == 2
    x = input.unsqueeze(0) if unbatched else input
    s, p, d = _to_2d_args(stride, padding, dilation)
    out = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, s, p, d, groups).squeeze(2)
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    """Transposed 2-D convolution: conv2d's input gradient, with weight (C_in, C_out/groups, kh, kw)."""
    if _amp.ACTIVE:
        input, weight, bias = _amp.lower("conv_transpose2d", input, weight, bias)
    if input.dim() == 3:
        return conv_transpose2d(input.unsqueeze(0), weight, bias, stride, padding, output_padding, groups,
                                dilation).squeeze(0)
    stride, dilation, pad, opad = _pair(stride), _pair(dilation), _pair(padding), _pair(output_padding)
    if any(o >= max(s, d) for o, s, d in zip(opad, stride, dilation)):
        raise RuntimeError("output padding must be smaller than either stride or dilation")
    x, w = input._data, weight._data
    xp = get_array_module(x)
    n, cin, h, wd = x.shape
    _, og, kh, kw = w.shape
    g = groups
    cig, cout = cin // g, og * g
    ho = (h - 1) * stride[0] - 2 * pad[0] + dilation[0] * (kh - 1) + opad[0] + 1
    wo = (wd - 1) * stride[1] - 2 * pad[1] + dilation[1] * (kw - 1) + opad[1] + 1
    pads = ((pad[0], pad[0]), (pad[1], pad[1]))
    xm = xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(g, cig, n * h * wd)  # (G, Cig, N*H*W)
    gcols = xp.matmul(w.reshape(g, cig, og * kh * kw).transpose(0, 2, 1), xm)  # (G, Og*kh*kw, N*H*W)
    gcols = gcols.reshape(cout, kh, kw, n, h, wd)
    full = _col2im_cm(xp, gcols, (n, cout, ho + 2 * pad[0], wo + 2 * pad[1]), (kh, kw), stride, dilation)
    out = wrap(xp.ascontiguousarray(full[:, :, pad[0]:pad[0] + ho, pad[1]:pad[1] + wo]))
    if needs_grad(input, weight):
        def backward(gout: Tensor, _: Any) -> tuple:
            # a plain conv2d of the output gradient gives the input gradient; its columns
            # against the input give the weight gradient
            gx, cols, _ = _conv2d_arrays(gout._data, w, stride, pads, dilation, g, channels_last=False)
            gw = None
            if weight.requires_grad:
                gw = xp.matmul(xm, cols.transpose(0, 2, 1)).reshape(cin, og, kh, kw)
            return (wrap(gx) if input.requires_grad else None, None if gw is None else wrap(gw))

        attach(out, (input, weight), backward, "ConvolutionBackward0")
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    unbatched = input.dim() == 2
    x = input.unsqueeze(0) if unbatched else input
    out = conv_transpose2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, _pair(stride, 1)[0]),
                           (0, _pair(padding, 1)[0]), (0, _pair(output_padding, 1)[0]), groups,
                           (1, _pair(dilation, 1)[0])).squeeze(2)
    return out.squeeze(0) if unbatched else out


def unfold(input: Tensor, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1) -> Tensor:
    """Sliding local blocks: (N, C, H, W) -> (N, C*kh*kw, L), torch's column order."""
    k, d, p, s = _pair(kernel_size), _pair(dilation), _pair(padding), _pair(stride)
    x = input._data
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho = _out_size(h, k[0], s[0], 2 * p[0], d[0])
    wo = _out_size(w, k[1], s[1], 2 * p[1], d[1])
    pads = ((p[0], p[0]), (p[1], p[1]))
    xpad = xp.pad(x, ((0, 0), (0, 0)) + pads)
    win = _windows(xp, xpad, k, s, d, (ho, wo))
    out = wrap(xp.ascontiguousarray(win).reshape(n, c * k[0] * k[1], ho * wo))
    if needs_grad(input):
        def backward(g: Tensor, _: Any) -> tuple:
            cols = g._data.reshape(n, c, k[0], k[1], ho, wo)
            full = _col2im(xp, cols, xpad.shape, k, s, d)
            return (wrap(xp.ascontiguousarray(full[:, :, p[0]:p[0] + h, p[1]:p[1] + w])),)

        attach(out, (input,), backward, "Im2ColBackward0")
    return out


def fold(input: Tensor, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
         stride: Any = 1) -> Tensor:
    """Sums sliding blocks (N, C*kh*kw, L) back into (N, C, H, W): unfold's adjoint."""
    k, d, p, s = _pair(kernel_size), _pair(dilation), _pair(padding), _pair(stride)
    h, w = _pair(output_size)
    x = input._data
    xp = get_array_module(x)
    n, ckk, _ = x.shape
    c = ckk // (k[0] * k[1])
    ho = _out_size(h, k[0], s[0], 2 * p[0], d[0])
    wo = _out_size(w, k[1], s[1], 2 * p[1], d[1])
    padded = (n, c, h + 2 * p[0], w + 2 * p[1])
    full = _col2im(xp, x.reshape(n, c, k[0], k[1], ho, wo), padded, k, s, d)
    out = wrap(xp.ascontiguousarray(full[:, :, p[0]:p[0] + h, p[1]:p[1] + w]))
    if needs_grad(input):
        def backward(g: Tensor, _: Any) -> tuple:
            gpad = xp.pad(g._data, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
            win = _windows(xp, gpad, k, s, d, (ho, wo))
            return (wrap(xp.ascontiguousarray(win).reshape(n, ckk, ho * wo)),)

        attach(out, (input,), backward, "Col2ImBackward0")
    return out

