#!/usr/bin/env python3
"""Times one DARTS, GDAS or SPOS search step in PyTorch (CPU or GPU): the reference for `nas bench`.

The network and the step follow the semantics of the DARTS reference code (Liu, Simonyan,
Yang, "DARTS: Differentiable Architecture Search", ICLR 2019; quark0/darts `cnn/operations.py`,
`cnn/model_search.py`, `cnn/architect.py`, `cnn/train_search.py`), written from that
description rather than copied:

- 8 candidate operations per edge (none, max/avg pool 3x3, skip, sep conv 3x3/5x5, dil conv
  3x3/5x5); inside a mixed op every pool is followed by an affine-free batch norm; the mixed
  op is the softmax-weighted sum of all 8 outputs (`none` included, as in the reference);
- cells with 4 intermediate nodes, the last 4 concatenated; reduction cells at layers//3 and
  2*layers//3; preprocessing ReLU-conv1x1-BN (FactorizedReduce after a reduction cell); all
  batch norms inside cells affine-free; stem conv 3x3 to 3C channels + affine BN; global
  average pool and a linear classifier;
- alphas: one 14x8 matrix for normal and one for reduction cells, 1e-3 * N(0, 1), not among
  the weights;
- one search step = an architecture step (Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3,
  on a validation batch; first order, or second order: unrolled virtual step
  w' = w - xi (momentum * buf + dL_train/dw + wd w), then the finite-difference Hessian-vector
  product with eps = 0.01 / ||dL_val/dw'||) followed by a weight step (SGD lr 0.025, momentum
  0.9, weight decay 3e-4, gradient norm clipped to 5) on a training batch.

`--strategy gdas` (Dong & Yang, "Searching for a Robust Neural Architecture in Four GPU
Hours", CVPR 2019; reference D-X-Y/AutoDL-Projects `search_model_gdas.py`, `GDAS.py`): one
hard Gumbel-softmax sample per edge and batch (tau 10, the start of the schedule), only the
sampled operation runs and the others enter as their zero-valued straight-through weight; a
weight step (SGD as above) on a training batch, then an architecture step (Adam as above) on
a validation batch, each with its own sample. `--strategy spos` (Guo et al., "Single Path
One-Shot NAS with Uniform Sampling", ECCV 2020): one uniformly sampled operation per edge,
one weight step (SGD as above) on a training batch.

Timing: `--warmup` untimed steps, then `--steps` timed ones; prints wall ms per step (median
and mean), process CPU ms per step (all threads; less sensitive to other load on a shared
machine), the peak resident memory of the process (ru_maxrss) and the parameter count.

`--strategy retrain`: one step of DARTS' retraining stage (the reference's `model.py`
`NetworkCIFAR` with the DARTS_V2 genotype, affine batch norms, the auxiliary head on the
output of cell 2*layers//3 with loss weight 0.4, drop path with probability 0.2 on every
non-identity op; SGD as above); DARTS retrains with --layers 20 --channels 36 --batch 96.

`--device cuda` runs the network, the data and both optimizers on the first GPU (eager mode),
synchronising the device before each step's clock stops, and also reports the peak GPU memory
PyTorch allocated (`torch.cuda.max_memory_allocated`) and the GPU's name (docs/gpu.md).
`--compile` wraps the network in `torch.compile` (default mode; the warm-up steps pay the
compilation): the "torch.compile" reference of issue 22.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRIMITIVES = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]


def rss_mib():
    """Current resident memory (VmRSS) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def bn(c, affine=False):
    return nn.BatchNorm2d(c, affine=affine)


class ZeroOp(nn.Module):
    """`none`: zeros of the output shape (computed as x * 0, as the reference does)."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReluConvBn(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad, affine=False):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False),
            bn(c_out, affine),
        )


class FactorizedReduce(nn.Module):
    """ReLU, two stride-2 1x1 convs (the second on the input shifted by one pixel), cat, BN."""

    def __init__(self, c_in, c_out, affine=False):
        super().__init__()
        self.a = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.b = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.norm = bn(c_out, affine)

    def forward(self, x):
        x = F.relu(x)
        return self.norm(torch.cat([self.a(x), self.b(x[:, :, 1:, 1:])], dim=1))


def dil_conv(c, k, stride, pad, dil, affine=False):
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c, c, k, stride=stride, padding=pad, dilation=dil, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        bn(c, affine),
    )


def sep_conv(c, k, stride, pad, affine=False):
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c, c, k, stride=stride, padding=pad, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        bn(c, affine),
        nn.ReLU(),
        nn.Conv2d(c, c, k, stride=1, padding=pad, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        bn(c, affine),
    )


def make_op(name, c, stride, searching=True):
    """An operation of the search network (`searching`: affine-free batch norms, a batch
    norm after each pool, as the reference's MixedOp) or of the retrained network (affine
    batch norms, plain pools, as the reference's `OPS` with affine=True)."""
    affine = not searching
    if name == "none":
        return ZeroOp(stride)
    if name == "max_pool_3x3":
        pool = nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.Sequential(pool, bn(c)) if searching else pool
    if name == "avg_pool_3x3":
        pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        return nn.Sequential(pool, bn(c)) if searching else pool
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name == "sep_conv_3x3":
        return sep_conv(c, 3, stride, 1, affine)
    if name == "sep_conv_5x5":
        return sep_conv(c, 5, stride, 2, affine)
    if name == "dil_conv_3x3":
        return dil_conv(c, 3, stride, 2, 2, affine)
    if name == "dil_conv_5x5":
        return dil_conv(c, 5, stride, 4, 2, affine)
    raise ValueError(name)


class MixedEdge(nn.Module):
    def __init__(self, c, stride):
        super().__init__()
        self.ops = nn.ModuleList(make_op(p, c, stride) for p in PRIMITIVES)

    def forward(self, x, w, index=None):
        if index is not None and w is None:  # SPOS: the sampled operation alone
            return self.ops[index](x)
        if index is not None:  # GDAS: the sampled operation, the others' weights (all 0)
            out = w[index] * self.ops[index](x)
            for k in range(len(self.ops)):
                if k != index:
                    out = out + w[k]
            return out
        out = w[0] * self.ops[0](x)
        for k in range(1, len(self.ops)):
            out = out + w[k] * self.ops[k](x)
        return out


class SearchCell(nn.Module):
    def __init__(self, nodes, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.nodes = nodes
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReluConvBn(c_pp, c, 1, 1, 0)
        self.pre1 = ReluConvBn(c_p, c, 1, 1, 0)
        self.edges = nn.ModuleList()
        for i in range(nodes):
            for j in range(i + 2):
                self.edges.append(MixedEdge(c, 2 if reduction and j < 2 else 1))

    def forward(self, s0, s1, weights, indices=None):
        states = [self.pre0(s0), self.pre1(s1)]
        e = 0
        for i in range(self.nodes):
            s = None
            for h in states:
                w = None if weights is None else weights[e]
                y = self.edges[e](h, w, None if indices is None else indices[e])
                s = y if s is None else s + y
                e += 1
            states.append(s)
        return torch.cat(states[-self.nodes :], dim=1)


class SearchNetwork(nn.Module):
    def __init__(self, c, layers, classes=10, nodes=4, stem_mult=3):
        super().__init__()
        c_cur = stem_mult * c
        self.stem = nn.Sequential(nn.Conv2d(3, c_cur, 3, padding=1, bias=False), nn.BatchNorm2d(c_cur))
        c_pp, c_p, c_cur = c_cur, c_cur, c
        self.cells = nn.ModuleList()
        red_prev = False
        for i in range(layers):
            red = i in (layers // 3, 2 * layers // 3)
            if red:
                c_cur *= 2
            self.cells.append(SearchCell(nodes, c_pp, c_p, c_cur, red, red_prev))
            red_prev = red
            c_pp, c_p = c_p, nodes * c_cur
        self.classifier = nn.Linear(c_p, classes)
        edges = sum(i + 2 for i in range(nodes))
        # Plain tensors, not registered: model.parameters() are the weights only.
        self.alphas = [
            (1e-3 * torch.randn(edges, len(PRIMITIVES))).requires_grad_(),
            (1e-3 * torch.randn(edges, len(PRIMITIVES))).requires_grad_(),
        ]

    def forward(self, x, strategy="darts", tau=10.0):
        if strategy == "darts":
            (wn, wr), (inn, inr) = [F.softmax(a, dim=-1) for a in self.alphas], (None, None)
        elif strategy == "gdas":
            wn, wr = [F.gumbel_softmax(a, tau=tau, hard=True, dim=-1) for a in self.alphas]
            inn, inr = [w.argmax(-1).tolist() for w in (wn, wr)]
        else:  # spos
            wn = wr = None
            inn, inr = [torch.randint(0, a.shape[1], (a.shape[0],)).tolist() for a in self.alphas]
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            red = cell.reduction
            s0, s1 = s1, cell(s0, s1, wr if red else wn, inr if red else inn)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


# The DARTS_V2 genotype (Liu et al. 2019, quark0/darts `genotypes.py`): (op, input) pairs,
# two per node, and the concatenated nodes.
DARTS_V2 = {
    "normal": [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
               ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
               ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    "concat": [2, 3, 4, 5],
}


def drop_path(x, p):
    """Zeroes whole examples with probability p and scales the rest by 1 / (1 - p)."""
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device).bernoulli_(keep)
    return x / keep * mask


class EvalCell(nn.Module):
    """A cell of the retrained network (the reference's `model.py` `Cell`)."""

    def __init__(self, genotype, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.pre0 = (FactorizedReduce(c_pp, c, True) if reduction_prev
                     else ReluConvBn(c_pp, c, 1, 1, 0, True))
        self.pre1 = ReluConvBn(c_p, c, 1, 1, 0, True)
        pairs = genotype["reduce" if reduction else "normal"]
        self.ops = nn.ModuleList(
            make_op(name, c, 2 if reduction and j < 2 else 1, searching=False) for name, j in pairs
        )
        self.inputs = [j for _, j in pairs]
        self.concat = genotype["concat"]

    def forward(self, s0, s1, drop_prob):
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(len(self.ops) // 2):
            hs = []
            for k in (2 * i, 2 * i + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[k], nn.Identity):
                    h = drop_path(h, drop_prob)
                hs.append(h)
            states.append(hs[0] + hs[1])
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxHead(nn.Module):
    """The auxiliary classifier on the 8x8 maps after the second reduction (`AuxiliaryHeadCIFAR`)."""

    def __init__(self, c, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(768, classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """The retrained network (`NetworkCIFAR`): stem, cells, auxiliary head, classifier."""

    def __init__(self, c, layers, genotype=DARTS_V2, classes=10, stem_mult=3, drop_prob=0.2):
        super().__init__()
        self.drop_prob = drop_prob
        c_cur = stem_mult * c
        self.stem = nn.Sequential(nn.Conv2d(3, c_cur, 3, padding=1, bias=False), nn.BatchNorm2d(c_cur))
        c_pp, c_p, c_cur = c_cur, c_cur, c
        self.cells = nn.ModuleList()
        self.aux_at = 2 * layers // 3
        red_prev = False
        for i in range(layers):
            red = i in (layers // 3, 2 * layers // 3)
            if red:
                c_cur *= 2
            self.cells.append(EvalCell(genotype, c_pp, c_p, c_cur, red, red_prev))
            red_prev = red
            c_pp, c_p = c_p, len(genotype["concat"]) * c_cur
            if i == self.aux_at:
                self.aux = AuxHead(c_p, classes)
        self.classifier = nn.Linear(c_p, classes)

    def forward(self, x):
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_prob)
            if i == self.aux_at and self.training:
                aux = self.aux(s1)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1)), aux


class Retrain:
    """One retraining step (the reference's `train.py`): SGD lr 0.025, momentum 0.9, weight
    decay 3e-4, loss + 0.4 * auxiliary loss, gradient norm clipped to 5."""

    def __init__(self, net, aux_weight=0.4, clip=5.0):
        self.net, self.forward = net, net
        self.aux_weight, self.clip = aux_weight, clip
        self.opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)

    def step(self, xt, yt, xv=None, yv=None):
        self.opt.zero_grad(set_to_none=True)
        logits, aux = self.forward(xt)
        loss = F.cross_entropy(logits, yt) + self.aux_weight * F.cross_entropy(aux, yt)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.opt.step()


class Search:
    """The two optimizers and one search step (architecture step, then weight step)."""

    def __init__(self, net, order, strategy="darts", lr=0.025, momentum=0.9, wd=3e-4, clip=5.0):
        self.net = net
        # The callable that runs the network: the module itself, or its torch.compile wrapper.
        self.forward = net
        self.order = order
        self.strategy = strategy
        self.lr, self.momentum, self.wd, self.clip = lr, momentum, wd, clip
        self.weights = list(net.parameters())
        self.wopt = torch.optim.SGD(self.weights, lr=lr, momentum=momentum, weight_decay=wd)
        self.aopt = torch.optim.Adam(net.alphas, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def loss(self, x, y):
        return F.cross_entropy(self.forward(x, self.strategy), y)

    def grad(self, loss, wrt):
        # allow_unused: with fewer than 3 cells every cell may be a reduction cell.
        gs = torch.autograd.grad(loss, wrt, allow_unused=True)
        return [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, gs)]

    def arch_grads_first(self, xv, yv):
        return self.grad(self.loss(xv, yv), self.net.alphas)

    @torch.no_grad()
    def _shift(self, vectors, scale):
        for p, v in zip(self.weights, vectors):
            p.add_(v, alpha=scale)

    def arch_grads_second(self, xt, yt, xv, yv):
        xi = self.lr
        w0 = [p.detach().clone() for p in self.weights]
        # Virtual step w' = w - xi (momentum * buf + dL_train/dw + wd w).
        gt = self.grad(self.loss(xt, yt), self.weights)
        with torch.no_grad():
            for p, g, w in zip(self.weights, gt, w0):
                d = g + self.wd * w
                buf = self.wopt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    d = d + self.momentum * buf
                p.sub_(d, alpha=xi)
        # Validation loss at w': gradients for the alphas and for w'.
        g = self.grad(self.loss(xv, yv), self.net.alphas + self.weights)
        dalpha, v = g[:2], g[2:]
        with torch.no_grad():
            for p, w in zip(self.weights, w0):
                p.copy_(w)
        # Finite-difference Hessian-vector product around w.
        eps = 0.01 / torch.cat([t.flatten() for t in v]).norm()
        self._shift(v, eps)
        gp = self.grad(self.loss(xt, yt), self.net.alphas)
        self._shift(v, -2 * eps)
        gm = self.grad(self.loss(xt, yt), self.net.alphas)
        self._shift(v, eps)
        return [a - xi * (p - m) / (2 * eps) for a, p, m in zip(dalpha, gp, gm)]

    def weight_step(self, xt, yt):
        self.wopt.zero_grad(set_to_none=True)
        self.loss(xt, yt).backward()
        nn.utils.clip_grad_norm_(self.weights, self.clip)
        self.wopt.step()

    def step(self, xt, yt, xv, yv):
        if self.strategy == "spos":
            self.weight_step(xt, yt)
            return
        if self.strategy == "gdas":
            self.weight_step(xt, yt)
            self.aopt.zero_grad(set_to_none=True)
            for a, g in zip(self.net.alphas, self.grad(self.loss(xv, yv), self.net.alphas)):
                a.grad = g
            self.aopt.step()
            return
        if self.order == "first":
            ga = self.arch_grads_first(xv, yv)
        else:
            ga = self.arch_grads_second(xt, yt, xv, yv)
        for a, g in zip(self.net.alphas, ga):
            a.grad = g
        self.aopt.step()
        self.wopt.zero_grad(set_to_none=True)
        self.loss(xt, yt).backward()
        nn.utils.clip_grad_norm_(self.weights, self.clip)
        self.wopt.step()


def add_step_arguments(ap):
    """The network's and the batch's size and the DARTS order (the issue-2 configuration by
    default), shared with memory_timeline.py."""
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--order", choices=["first", "second"], default="first")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_step_arguments(ap)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--strategy", choices=["darts", "gdas", "spos", "retrain"], default="darts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: PyTorch sees no CUDA device")
    device = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.strategy == "retrain":
        net = EvalNetwork(a.channels, a.layers).to(device)
        net.train()
        search = Retrain(net)
    else:
        net = SearchNetwork(a.channels, a.layers).to(device)
        # The alphas are not registered parameters: .to() leaves them; move them as leaves.
        net.alphas = [t.detach().to(device).requires_grad_() for t in net.alphas]
        net.train()
        search = Search(net, a.order, a.strategy)
    if a.compile:
        search.forward = torch.compile(net)
    # As the reference's `count_parameters_in_MB` (and `nas bench`): without the auxiliary head.
    params = sum(p.numel() for n, p in net.named_parameters() if "aux" not in n)
    # Four batches of synthetic data, two for weights and two for alphas (as `nas bench`).
    n = 4 * a.batch
    xs = torch.rand(n, 3, a.size, a.size, device=device)
    ys = torch.randint(0, 10, (n,), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    rss0 = rss_mib()
    times = []
    cpu0 = None
    for i in range(a.warmup + a.steps):
        t0 = (2 * i) % 4 * a.batch
        v0 = (2 * i + 1) % 4 * a.batch
        xt, yt = xs[t0 : t0 + a.batch], ys[t0 : t0 + a.batch]
        xv, yv = xs[v0 : v0 + a.batch], ys[v0 : v0 + a.batch]
        if i == a.warmup:
            cpu0 = time.process_time()
        sync()
        start = time.perf_counter()
        search.step(xt, yt, xv, yv)
        sync()
        if i >= a.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    cpu_ms = (time.process_time() - cpu0) * 1e3 / len(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res = {
        "config": vars(a),
        "torch": torch.__version__,
        "ms_per_step": statistics.mean(times),
        "median_ms": statistics.median(times),
        "step_ms": times,
        "cpu_ms_per_step": cpu_ms,
        "peak_rss_mib": peak,
        "rss_before_steps_mib": rss0,
        "threads": torch.get_num_threads(),
        "supernet_params": params,
        "device": a.device,
    }
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(device)
        res["gpu_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"torch {torch.__version__}: {a.layers} cells, C={a.channels}, batch {a.batch}, "
            f"{a.size}x{a.size}, {a.strategy} ({a.order} order), {res['threads']} threads, "
            f"{res.get('gpu', 'cpu')}{' (torch.compile)' if a.compile else ''}"
        )
        print(f"  ms/step: median {res['median_ms']:.1f}, mean {res['ms_per_step']:.1f} ({len(times)} steps)")
        print(f"  CPU ms/step (all threads): {cpu_ms:.1f}")
        print(f"  peak RSS: {peak:.1f} MiB (before the first step: {rss0:.1f} MiB); "
              f"supernet params: {params}")
        if "gpu_peak_mib" in res:
            print(f"  peak GPU memory allocated: {res['gpu_peak_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
