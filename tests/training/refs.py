"""float64 numpy references the training tests compare against (written from Keras 3's
equations, independent of kiln)."""
import math

import numpy as np


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


class SGD:
    def __init__(self, lr=0.01, momentum=0.0):
        self.lr, self.momentum, self.m = lr, momentum, {}

    def step(self, ws, gs):
        out = []
        for k, (w, g) in enumerate(zip(ws, gs)):
            if self.momentum:
                m = self.momentum * self.m.get(k, 0) - self.lr * g
                self.m[k] = m
                out.append(w + m)
            else:
                out.append(w - self.lr * g)
        return out


class Adam:
    def __init__(self, lr=0.001, b1=0.9, b2=0.999, eps=1e-7):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.t, self.m, self.v = 0, {}, {}

    def step(self, ws, gs):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        alpha = self.lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        out = []
        for k, (w, g) in enumerate(zip(ws, gs)):
            m = self.m.get(k, 0) + (g - self.m.get(k, 0)) * (1 - b1)
            v = self.v.get(k, 0) + (g * g - self.v.get(k, 0)) * (1 - b2)
            self.m[k], self.v[k] = m, v
            out.append(w - m * alpha / (np.sqrt(v) + self.eps))
        return out


def mlp_loss_grads(ws, x, y):
    """Dense(relu) -> Dense(softmax), categorical crossentropy (from the logits, as
    Keras' TF backend on a softmax output), mean over the batch."""
    w1, b1, w2, b2 = ws
    a1 = x @ w1 + b1
    h = np.maximum(a1, 0)
    z = h @ w2 + b2
    loss = -(y * log_softmax(z)).sum(1).mean()
    dz = (softmax(z) - y) / len(x)
    da1 = (dz @ w2.T) * (a1 > 0)
    return loss, [x.T @ da1, da1.sum(0), h.T @ dz, dz.sum(0)]


def cnn_loss_grads(ws, x, y):
    """Conv2D(k x k, valid, relu) -> Flatten -> Dense(softmax), categorical crossentropy."""
    wc, bc, wd, bd = ws
    k, _, _, f = wc.shape
    n, hh, ww, _ = x.shape
    ho, wo = hh - k + 1, ww - k + 1
    a = np.zeros((n, ho, wo, f)) + bc
    for i in range(k):
        for j in range(k):
            a += np.einsum("nhwc,cf->nhwf", x[:, i:i + ho, j:j + wo, :], wc[i, j])
    h = np.maximum(a, 0)
    flat = h.reshape(n, -1)
    z = flat @ wd + bd
    loss = -(y * log_softmax(z)).sum(1).mean()
    dz = (softmax(z) - y) / n
    da = (dz @ wd.T).reshape(h.shape) * (a > 0)
    gwc = np.zeros_like(wc)
    for i in range(k):
        for j in range(k):
            gwc[i, j] = np.einsum("nhwc,nhwf->cf", x[:, i:i + ho, j:j + wo, :], da)
    return loss, [gwc, da.sum((0, 1, 2)), flat.T @ dz, dz.sum(0)]


def train_reference(loss_grads, ws, opt, batches):
    """Losses of each step (before its update) and the final weights."""
    ws = [w.astype(np.float64) for w in ws]
    losses = []
    for x, y in batches:
        loss, gs = loss_grads(ws, x.astype(np.float64), y.astype(np.float64))
        losses.append(loss)
        ws = opt.step(ws, gs)
    return np.array(losses), ws
