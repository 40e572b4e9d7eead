"""The model bank's training step as fused CPU kernels (numba).

The TensorFlow bank (:mod:`emolib.training.bank`) runs one traced step for all units, but on a
CPU each of its ops makes a full pass through memory over the convolution's output (B x 16 x
P x (K - 2) x F floats per step) and its gradient, and a dozen small kernels launch per step at
small K: measured, its step was 5-6 times the time of its floating-point work. Here one call
trains every unit of a bank for one epoch, the units split over the cores, and each unit's step
is written out by hand: the convolution, its ReLU and BatchNorm's batch statistics in one pass;
the BatchNorm-folded LSTM input projection, its gradient and the gradient it sends back to the
convolution as three BLAS products (one BLAS thread per kernel thread: see
:func:`emolib.training.bank._one_blas_thread`); the recurrence, the head and their gradients in
small loops. Measured on 2 cores it is not yet faster than the TensorFlow bank in the demo
(docs/MEASUREMENTS.md), so it is opt-in (``EMOLIB_BANK_BACKEND=numba``).

The arithmetic is the TensorFlow bank's (and so tf-keras' single-model training's, up to
float32 rounding): the same forward pass, the exact gradient of the same loss, Adam with one
step counter per unit, BatchNorm's moving statistics through Bessel's correction and back.
Sums over many terms (BatchNorm's statistics, the convolution's kernel gradient) accumulate in
float64. No fast-math flag is used, so a kernel compiled fresh and the same kernel loaded from
numba's cache round alike (not all loops vectorise without one: measuring which cost what is
the next step, docs/MEASUREMENTS.md).

Weights travel as one flat float32 row per unit (``model.get_weights()`` flattened and
concatenated, ``offsets`` marking where each starts), Adam's moments as rows of the same
layout, ``trainable`` marking the entries Adam updates (not BatchNorm's moving statistics, not
R-EMO's frozen convolution).
"""
from __future__ import annotations

import math

import numpy as np

try:  # pragma: no branch
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the TensorFlow bank remains
    numba = None

AVAILABLE = numba is not None

# FC1 activations, by code.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu")

if AVAILABLE:
    @numba.njit(cache=True, inline="always")
    def _sigmoid(v):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-v))

    @numba.njit(cache=True, inline="always")
    def _act(v, code):
        if code == 0:
            return v if v > 0 else np.float32(0.0)
        if code == 1:
            return np.tanh(v)
        if code == 2:
            return _sigmoid(v)
        return v if v > 0 else np.expm1(v)

    @numba.njit(cache=True, inline="always")
    def _act_grad(pre, out, code):
        if code == 0:
            return np.float32(1.0) if pre > 0 else np.float32(0.0)
        if code == 1:
            return np.float32(1.0) - out * out
        if code == 2:
            return out * (np.float32(1.0) - out)
        return np.float32(1.0) if out >= 0 else out + np.float32(1.0)

    @numba.njit(cache=True, inline="always")
    def _views(w, o, D, G, Q, R):
        """One unit's flat row -> its 13 weights (views, model.get_weights() order; 2-D where Keras' are)."""
        return (w[o[0]:o[1]], w[o[1]:o[2]], w[o[2]:o[3]], w[o[3]:o[4]], w[o[4]:o[5]], w[o[5]:o[6]],
                w[o[6]:o[7]].reshape((D, G)), w[o[7]:o[8]].reshape((Q, G)), w[o[8]:o[9]],
                w[o[9]:o[10]].reshape((Q, R)), w[o[10]:o[11]], w[o[11]:o[12]].reshape((R, 2)), w[o[12]:o[13]])

    @numba.njit(cache=True, inline="always")
    def _lstm_scratch(rows, Q):
        """The recurrence's per-row buffers, (rows, Q) each: the four gates, the cell state, its
        tanh and the hidden state (what :func:`_lstm_head` fills and backprop reads)."""
        return (np.empty((rows, Q), np.float32), np.empty((rows, Q), np.float32),
                np.empty((rows, Q), np.float32), np.empty((rows, Q), np.float32),
                np.empty((rows, Q), np.float32), np.empty((rows, Q), np.float32),
                np.empty((rows, Q), np.float32))

    @numba.njit(cache=True)
    def _convolve(xs, cw, cb, kh, kw, F, wo, zrow):
        """One frame (2, K) -> zrow (ho * wo * F,), Keras' (h, w, f) order, after the ReLU."""
        ho = 3 - kh
        acc = np.empty(F, np.float32)
        for h in range(ho):
            for w in range(wo):
                for f in range(F):
                    acc[f] = np.float32(0.0)
                for dh in range(kh):
                    for dw in range(kw):
                        xv = xs[h + dh, w + dw]
                        base = (dh * kw + dw) * F
                        for f in range(F):
                            acc[f] += cw[base + f] * xv
                out = (h * wo + w) * F
                for f in range(F):
                    v = acc[f] + cb[f]
                    zrow[out + f] = v if v > 0 else np.float32(0.0)

    @numba.njit(cache=True)
    def _fold(wx, a, c, bl, F, wa, beff):
        """BatchNorm (z * a + c per filter) folded into the LSTM's input kernel and bias."""
        D, G = wx.shape
        for g in range(G):
            beff[g] = bl[g]
        for d in range(D):
            f = d % F
            for g in range(G):
                wa[d, g] = a[f] * wx[d, g]
                beff[g] += c[f] * wx[d, g]

    @numba.njit(cache=True)
    def _lstm_head(xw, r_base, P, Q, R, u, keep_row, scale, w1, b1, w2, b2, act, gi, gf, gg, go, cs, tc,
                   hs, hd, pre1, hid, prob):
        """The recurrence over one sample's P projected frames, dropout, FC1 and FC2."""
        G = 4 * Q
        h = np.zeros(Q, np.float32)
        c = np.zeros(Q, np.float32)
        gates = np.empty(G, np.float32)
        for t in range(P):
            r = r_base + t
            for g in range(G):
                gates[g] = xw[r, g]
            for q in range(Q):
                hq = h[q]
                if hq != 0:
                    for g in range(G):
                        gates[g] += hq * u[q, g]
            for q in range(Q):
                hs[r, q] = h[q]  # h before this frame (the gradient of U needs it)
            for q in range(Q):
                i_ = _sigmoid(gates[q])
                f_ = _sigmoid(gates[Q + q])
                g_ = np.tanh(gates[2 * Q + q])
                o_ = _sigmoid(gates[3 * Q + q])
                c[q] = f_ * c[q] + i_ * g_
                t_ = np.tanh(c[q])
                h[q] = o_ * t_
                gi[r, q], gf[r, q], gg[r, q], go[r, q] = i_, f_, g_, o_
                cs[r, q], tc[r, q] = c[q], t_
        for q in range(Q):
            if keep_row is None:
                hd[q] = h[q]
            else:
                hd[q] = h[q] * scale if keep_row[q] else np.float32(0.0)
        for k in range(R):
            pre1[k] = b1[k]
        for q in range(Q):
            hv = hd[q]
            for k in range(R):
                pre1[k] += hv * w1[q, k]
        for k in range(R):
            hid[k] = _act(pre1[k], act)
        l0, l1 = b2[0], b2[1]
        for k in range(R):
            l0 += hid[k] * w2[k, 0]
            l1 += hid[k] * w2[k, 1]
        mx = max(l0, l1)
        e0, e1 = np.exp(l0 - mx), np.exp(l1 - mx)
        s = e0 + e1
        prob[0], prob[1] = e0 / s, e1 / s

    @numba.njit(cache=True, parallel=True)
    def train_epoch(W, M1, M2, steps, trainable, offsets, x, y, sw, order, counts, keep, P, K, kh, kw, F, Q, R,
                    act, scale, lr, beta1, beta2, adam_eps, momentum, bn_eps, conv_trained, total, hits):
        """One epoch of every unit (rows of W); updates W, M1, M2, steps in place.

        ``order[b, s, :counts[b, s]]``: unit b's samples in step s (a unit with 0 samples in a
        step does not step); ``keep[b, s, i]``: sample i's dropout mask. ``total``, ``hits``:
        the epoch's summed weighted loss and correct answers per unit.
        """
        B, NW = W.shape
        S, bs = order.shape[1], order.shape[2]
        ho, wo = 3 - kh, K - kw + 1
        D, G = ho * wo * F, 4 * Q
        o = offsets
        for b in numba.prange(B):
            w = W[b]
            cw, cb, gam, bet, mm, mv, wx, u, bl, w1, b1, w2, b2 = _views(w, o, D, G, Q, R)
            grad = np.zeros(NW, np.float32)
            dcw, dcb, dgam, dbet, _, _, dwx, du, dbl, dw1, db1, dw2, db2 = _views(grad, o, D, G, Q, R)
            rows = bs * P
            z = np.empty((rows, D), np.float32)
            xw = np.empty((rows, G), np.float32)
            gm = np.empty((rows, G), np.float32)
            gi, gf, gg, go, cs, tc, hs = _lstm_scratch(rows, Q)
            hd = np.empty((bs, Q), np.float32)
            pre1 = np.empty((bs, R), np.float32)
            hid = np.empty((bs, R), np.float32)
            prob = np.empty((bs, 2), np.float32)
            wa = np.empty((D, G), np.float32)
            beff = np.empty(G, np.float32)
            mmat = np.empty((D, G), np.float32)
            a = np.empty(F, np.float32)
            c = np.empty(F, np.float32)
            mean = np.empty(F, np.float32)
            var = np.empty(F, np.float32)
            s1 = np.empty(F, np.float64)
            s2 = np.empty(F, np.float64)
            dlog = np.empty(2, np.float32)
            dpre = np.empty(R, np.float32)
            dh = np.empty(Q, np.float32)
            dc = np.empty(Q, np.float32)
            sg = np.empty(G, np.float32)
            for s in range(S):
                cnt = counts[b, s]
                if cnt == 0:
                    continue
                n_rows = cnt * P
                # ---- forward: convolution, ReLU, batch statistics ---------------------------
                for f in range(F):
                    s1[f] = 0.0
                    s2[f] = 0.0
                for i in range(cnt):
                    n_i = order[b, s, i]
                    for t in range(P):
                        r = i * P + t
                        _convolve(x[b, n_i, t], cw, cb, kh, kw, F, wo, z[r])
                        for d in range(D):
                            v = z[r, d]
                            if v != 0:
                                s1[d % F] += v
                                s2[d % F] += v * v
                size = cnt * P * ho * wo
                clamped = np.zeros(F, np.bool_)
                for f in range(F):
                    m_ = s1[f] / size
                    v_ = s2[f] / size - m_ * m_
                    if v_ < 0:
                        v_ = 0.0
                        clamped[f] = True
                    mean[f], var[f] = m_, v_
                    a[f] = gam[f] / np.sqrt(var[f] + np.float32(bn_eps))
                    c[f] = bet[f] - mean[f] * a[f]
                _fold(wx, a, c, bl, F, wa, beff)
                xw[:n_rows] = np.dot(z[:n_rows], wa) + beff
                # ---- the recurrence, the head, the loss --------------------------------------
                for g in range(grad.shape[0]):
                    grad[g] = 0.0
                for i in range(cnt):
                    _lstm_head(xw, i * P, P, Q, R, u, keep[b, s, i], np.float32(scale), w1, b1, w2, b2, act,
                               gi, gf, gg, go, cs, tc, hs, hd[i], pre1[i], hid[i], prob[i])
                for i in range(cnt):
                    n_i = order[b, s, i]
                    yi = y[b, n_i]
                    py = prob[i, yi]
                    total[b] += -math.log(max(py, np.float32(1e-7))) * sw[b, n_i]
                    guess = 1 if prob[i, 1] > prob[i, 0] else 0
                    if guess == yi:
                        hits[b] += 1.0
                    # ---- backward through the head ------------------------------------------
                    coef = sw[b, n_i] / np.float32(cnt) if py >= np.float32(1e-7) else np.float32(0.0)
                    dlog[0] = coef * (prob[i, 0] - (1.0 if yi == 0 else 0.0))
                    dlog[1] = coef * (prob[i, 1] - (1.0 if yi == 1 else 0.0))
                    db2[0] += dlog[0]
                    db2[1] += dlog[1]
                    for k in range(R):
                        dw2[k, 0] += hid[i, k] * dlog[0]
                        dw2[k, 1] += hid[i, k] * dlog[1]
                        dhid = dlog[0] * w2[k, 0] + dlog[1] * w2[k, 1]
                        dpre[k] = dhid * _act_grad(pre1[i, k], hid[i, k], act)
                        db1[k] += dpre[k]
                    for q in range(Q):
                        hv = hd[i, q]
                        acc = np.float32(0.0)
                        for k in range(R):
                            dw1[q, k] += hv * dpre[k]
                            acc += dpre[k] * w1[q, k]
                        dh[q] = acc * np.float32(scale) if keep[b, s, i, q] else np.float32(0.0)
                        dc[q] = 0.0
                    # ---- backward through time -----------------------------------------------
                    for t in range(P - 1, -1, -1):
                        r = i * P + t
                        for q in range(Q):
                            t_ = tc[r, q]
                            o_ = go[r, q]
                            d_o = dh[q] * t_
                            dcq = dc[q] + dh[q] * o_ * (np.float32(1.0) - t_ * t_)
                            cprev = cs[r - 1, q] if t > 0 else np.float32(0.0)
                            i_, f_, g_ = gi[r, q], gf[r, q], gg[r, q]
                            gm[r, q] = dcq * g_ * i_ * (np.float32(1.0) - i_)
                            gm[r, Q + q] = dcq * cprev * f_ * (np.float32(1.0) - f_)
                            gm[r, 2 * Q + q] = dcq * i_ * (np.float32(1.0) - g_ * g_)
                            gm[r, 3 * Q + q] = d_o * o_ * (np.float32(1.0) - o_)
                            dc[q] = dcq * f_
                        for q in range(Q):
                            hq = hs[r, q]
                            if hq != 0:
                                for g in range(G):
                                    du[q, g] += hq * gm[r, g]
                        for q in range(Q):
                            acc = np.float32(0.0)
                            for g in range(G):
                                acc += gm[r, g] * u[q, g]
                            dh[q] = acc
                # ---- backward through the input projection and BatchNorm --------------------
                for g in range(G):
                    sg[g] = 0.0
                for r in range(n_rows):
                    for g in range(G):
                        sg[g] += gm[r, g]
                for g in range(G):
                    dbl[g] += sg[g]
                mmat[:, :] = np.dot(z[:n_rows].T, gm[:n_rows])
                ea = np.zeros((F, G), np.float32)
                ec = np.zeros((F, G), np.float32)
                for d in range(D):
                    f = d % F
                    af, cf = a[f], c[f]
                    wd, md, dd, eaf, ecf = wx[d], mmat[d], dwx[d], ea[f], ec[f]
                    for g in range(G):
                        dd[g] += af * md[g] + cf * sg[g]
                        eaf[g] += wd[g] * md[g]
                        ecf[g] += wd[g] * sg[g]
                da = np.zeros(F, np.float64)
                dcc = np.zeros(F, np.float64)
                for f in range(F):
                    for g in range(G):
                        da[f] += ea[f, g]
                        dcc[f] += ec[f, g]
                ds1 = np.zeros(F, np.float32)
                ds2 = np.zeros(F, np.float32)
                for f in range(F):
                    rs = 1.0 / np.sqrt(np.float64(var[f]) + bn_eps)
                    dbet[f] += dcc[f]
                    da_tot = da[f] - dcc[f] * mean[f]
                    dgam[f] += da_tot * rs
                    dvar = da_tot * gam[f] * -0.5 * rs * rs * rs
                    dmean = -dcc[f] * a[f]
                    de2 = 0.0
                    if not clamped[f]:
                        de2 = dvar
                        dmean += -2.0 * mean[f] * dvar
                    ds1[f] = dmean / size
                    ds2[f] = 2.0 * de2 / size
                # ---- backward through the convolution (T-EMO) --------------------------------
                if conv_trained:
                    kc = np.zeros(kh * kw * F, np.float64)
                    bc = np.zeros(F, np.float64)
                    yall = np.dot(gm[:n_rows], wa.T)
                    for r in range(n_rows):
                        i, t = r // P, r % P
                        xs = x[b, order[b, s, i], t]
                        for h in range(ho):
                            for wpos in range(wo):
                                base = (h * wo + wpos) * F
                                for f in range(F):
                                    zv = z[r, base + f]
                                    if zv > 0:
                                        dzp = yall[r, base + f] + ds1[f] + ds2[f] * zv
                                        bc[f] += dzp
                                        for dh_ in range(kh):
                                            for dw_ in range(kw):
                                                kc[(dh_ * kw + dw_) * F + f] += dzp * xs[h + dh_, wpos + dw_]
                    for j in range(kh * kw * F):
                        dcw[j] += kc[j]
                    for f in range(F):
                        dcb[f] += bc[f]
                # ---- Adam and BatchNorm's moving statistics -----------------------------------
                steps[b] += 1.0
                tt = steps[b]
                alpha = np.float32(lr * math.sqrt(1.0 - beta2 ** tt) / (1.0 - beta1 ** tt))
                m1, m2 = M1[b], M2[b]
                for j in range(NW):
                    if trainable[j]:
                        gj = grad[j]
                        m1[j] += (gj - m1[j]) * np.float32(1.0 - beta1)
                        m2[j] += (gj * gj - m2[j]) * np.float32(1.0 - beta2)
                        w[j] -= (m1[j] * alpha) / (np.sqrt(m2[j]) + np.float32(adam_eps))
                n = max(np.float64(size), 2.0)
                fm = 1.0 - momentum
                for f in range(F):
                    mm[f] = (1.0 - fm) * mm[f] + fm * mean[f]
                    mv[f] = ((1.0 - fm) * (mv[f] * (n / (n - 1.0))) + fm * (var[f] * (n / (n - 1.0)))) * ((n - 1.0) / n)

    @numba.njit(cache=True, parallel=True)
    def predict(W, offsets, x, counts, P, K, kh, kw, F, Q, R, act, bn_eps, prob):
        """Class probabilities of every unit's first counts[b] samples of x (inference:
        BatchNorm's moving statistics, no dropout) -> prob (B, N, 2)."""
        B = W.shape[0]
        ho, wo = 3 - kh, K - kw + 1
        D, G = ho * wo * F, 4 * Q
        o = offsets
        chunk = 16
        for b in numba.prange(B):
            w = W[b]
            cw, cb, gam, bet, mm, mv, wx, u, bl, w1, b1, w2, b2 = _views(w, o, D, G, Q, R)
            a = np.empty(F, np.float32)
            c = np.empty(F, np.float32)
            for f in range(F):
                a[f] = gam[f] / np.sqrt(mv[f] + np.float32(bn_eps))
                c[f] = bet[f] - mm[f] * a[f]
            wa = np.empty((D, G), np.float32)
            beff = np.empty(G, np.float32)
            _fold(wx, a, c, bl, F, wa, beff)
            rows = chunk * P
            z = np.empty((rows, D), np.float32)
            xw = np.empty((rows, G), np.float32)
            gi, gf, gg, go, cs, tc, hs = _lstm_scratch(rows, Q)
            hd = np.empty(Q, np.float32)
            pre1 = np.empty(R, np.float32)
            hid = np.empty(R, np.float32)
            for n0 in range(0, counts[b], chunk):
                n1 = min(n0 + chunk, counts[b])
                for i in range(n1 - n0):
                    for t in range(P):
                        _convolve(x[b, n0 + i, t], cw, cb, kh, kw, F, wo, z[i * P + t])
                nr = (n1 - n0) * P
                xw[:nr] = np.dot(z[:nr], wa) + beff
                for i in range(n1 - n0):
                    _lstm_head(xw, i * P, P, Q, R, u, None, np.float32(1.0), w1, b1, w2, b2, act,
                               gi, gf, gg, go, cs, tc, hs, hd, pre1, hid, prob[b, n0 + i])
