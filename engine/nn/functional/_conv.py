"""Convolutions: conv1d, conv2d, conv_transpose1d/2d, unfold, fold.

im2col through a strided view (no copy until the GEMM needs one), then one batched
matmul over groups: (G, N*Ho*Wo, Cg*kh*kw) @ (G, Cg*kh*kw, Og). The backward is
the same GEMMs transposed, and col2im is a loop over the kh*kw kernel offsets
(never over pixels or batch items). Backward runs on arrays: no double backward.
"""
from __future__ import annotations

from typing import Any

from engine.backend import get_array_module
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
            out[:, :, hs:hs + stride[0] * (ho - 1) + 1:stride[0], ws:ws + stride[1] * (wo - 1) + 1:stride[1]] += cols[:, :, i, j]
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


def _conv2d_arrays(x: Any, w: Any, stride: tuple, pads: tuple, dilation: tuple, groups: int) -> tuple:
    xp = get_array_module(x)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if c != cg * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(w.shape)}, expected input{list(x.shape)} "
                           f"to have {cg * groups} channels, but got {c} channels instead")
    if o % groups:
        raise RuntimeError("out_channels must be divisible by groups")
    ho = _out_size(h, kh, stride[0], sum(pads[0]), dilation[0])
    wo = _out_size(wd, kw, stride[1], sum(pads[1]), dilation[1])
    if ho <= 0 or wo <= 0:
        raise RuntimeError(f"Calculated output size ({ho}x{wo}) is too small for input {list(x.shape)}")
    xpad = xp.pad(x, ((0, 0), (0, 0)) + tuple(pads)) if any(sum(p) for p in pads) else x
    win = _windows(xp, xpad, (kh, kw), stride, dilation, (ho, wo))  # (N, C, kh, kw, Ho, Wo)
    g, og = groups, o // groups
    kk = cg * kh * kw
    cols = win.reshape(n, g, cg, kh, kw, ho, wo).transpose(1, 0, 5, 6, 2, 3, 4).reshape(g, n * ho * wo, kk)
    wm = w.reshape(g, og, kk).transpose(0, 2, 1)  # (G, K, Og)
    out = xp.matmul(cols, wm)  # (G, N*Ho*Wo, Og)
    out = out.reshape(g, n, ho, wo, og).transpose(1, 0, 4, 2, 3).reshape(n, o, ho, wo)
    return xp.ascontiguousarray(out), cols, xpad.shape


def _conv2d_backward(g_out: Any, cols: Any, w: Any, x_shape: tuple, padded_shape: tuple, stride: tuple,
                     pads: tuple, dilation: tuple, groups: int, need_x: bool, need_w: bool) -> tuple:
    xp = get_array_module(g_out)
    n, o, ho, wo = g_out.shape
    _, cg, kh, kw = w.shape
    g, og = groups, o // groups
    gm = g_out.reshape(n, g, og, ho, wo).transpose(1, 0, 3, 4, 2).reshape(g, n * ho * wo, og)
    gw = gx = None
    if need_w:
        gw = xp.matmul(cols.transpose(0, 2, 1), gm)  # (G, K, Og)
        gw = gw.transpose(0, 2, 1).reshape(o, cg, kh, kw)
    if need_x:
        gcols = xp.matmul(gm, w.reshape(g, og, cg * kh * kw))  # (G, NHW, K)
        gcols = gcols.reshape(g, n, ho, wo, cg, kh, kw).transpose(1, 0, 4, 5, 6, 2, 3).reshape(n, g * cg, kh, kw, ho, wo)
        gpad = _col2im(xp, gcols, padded_shape, (kh, kw), stride, dilation)
        (pt, pb), (pl, pr) = pads
        gx = gpad[:, :, pt:pt + x_shape[2], pl:pl + x_shape[3]]
    return gx, gw


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation) of (N, C, H, W) or unbatched (C, H, W) input."""
    if input.dim() == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if input.dim() != 4:
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: {list(input.shape)}")
    stride, dilation = _pair(stride), _pair(dilation)
    k = tuple(weight.shape[2:])
    pads = _resolve_padding(padding, k, stride, dilation)
    x, w = input._data, weight._data
    if x.dtype != w.dtype:
        raise RuntimeError(f"Input type ({x.dtype}) and weight type ({w.dtype}) should be the same")
    out_arr, cols, padded_shape = _conv2d_arrays(x, w, stride, pads, dilation, groups)
    out = wrap(out_arr)
    if needs_grad(input, weight):
        x_shape = x.shape

        def backward(g: Tensor, _: Any) -> tuple:
            gx, gw = _conv2d_backward(g._data, cols, w, x_shape, padded_shape, stride, pads, dilation, groups,
                                      input.requires_grad, weight.requires_grad)
            return (None if gx is None else wrap(gx), None if gw is None else wrap(gw))

        attach(out, (input, weight), backward, "ConvolutionBackward0")
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
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
    gm = x.reshape(n, g, cig, h, wd).transpose(1, 0, 3, 4, 2).reshape(g, n * h * wd, cig)
    gcols = xp.matmul(gm, w.reshape(g, cig, og * kh * kw))  # (G, N*H*W, Og*kh*kw)
    gcols = gcols.reshape(g, n, h, wd, og, kh, kw).transpose(1, 0, 4, 5, 6, 2, 3).reshape(n, cout, kh, kw, h, wd)
    full = _col2im(xp, gcols, (n, cout, ho + 2 * pad[0], wo + 2 * pad[1]), (kh, kw), stride, dilation)
    out = wrap(xp.ascontiguousarray(full[:, :, pad[0]:pad[0] + ho, pad[1]:pad[1] + wo]))
    if needs_grad(input, weight):
        def backward(gout: Tensor, _: Any) -> tuple:
            # a plain conv2d of the output gradient gives the input gradient; its columns
            # against the input give the weight gradient
            gx, cols, _ = _conv2d_arrays(gout._data, w, stride, pads, dilation, g)
            gw = None
            if weight.requires_grad:
                gw = xp.matmul(gm.transpose(0, 2, 1), cols).reshape(cin, og, kh, kw)
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

