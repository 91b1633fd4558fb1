# SPDX-License-Identifier: MIT
"""refsae.py - a PyTorch reference of PatchSAE's SAE forward pass, loss and
training step, written from patchsae-reference.md §2.1-2.4 (no code copied).
Development-time only: tools/gen_sae_train_fixture.py uses it to write
tests/data/sae_train/ for the C trainer to match.

Facts implemented (reference section in brackets):
  [2.1] parameters in the order W_enc (D,S), b_enc (S), W_dec (S,D), b_dec (D)
        (the order is Adam's state order). Init: W_enc kaiming-uniform with
        PyTorch's fan_in = size(1) = S, i.e. U(+-sqrt(6/S)); W_dec U(+-sqrt(6/D))
        then unit-norm rows; b_enc 0; b_dec 0 then the geometric median.
  [2.1] f = ReLU((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec, per token.
  [2.2] m = (x_hat - x)^2 / ||x||_2   (per-token L2 norm, NOT squared),
        m[:,0,:] *= mse_cls_coefficient (1.0) for 3-D input in training mode,
        applied after the ghost term has used m; mse = mean(m) over B*T*D;
        l1 = lambda * mean over (b,t) of sum_j |f_j|;
        loss = mse + l1 + ghost.
  [2.2] ghost grads, only when some latent is dead:
        1. residual = x - x_hat
        2. g = exp(hidden_pre[..., dead]) @ W_dec[dead]
        3. g *= (||residual|| / (2||g|| + 1e-6)).detach()     (per token)
        4. gm = (g - residual.detach())^2 / ||residual.detach()|| (per token)
        5. gm *= (m / (gm + 1e-6)).detach()   (m un-meaned, elementwise)
        6. ghost = mean(gm)
  [2.2] dead mask = n_forward_passes_since_fired > dead_feature_window, taken
        BEFORE the forward pass; after it the counters all += 1 and reset to 0
        for latents with f > 0 on any token of any image in the batch.
        (Order cross-checked against a public copy of sae_trainer.py.)
  [2.3] b_dec init: Weiszfeld geometric median of one (B,T,D) batch with each
        image one point in R^(T*D): start at the mean; weights 1/max(||p-m||,
        eps=1e-6); m = weighted average; objective sum ||p-m||; stop when
        |prev - obj| <= ftol*obj (ftol 1e-20) or after maxiter (100) iterations;
        then the (T,D) median is averaged over tokens. The exact stopping test
        (|delta| <= ftol*obj, the geom_median package's) is our reading of
        "relative change <= ftol"; with ftol 1e-20 it only stops on an exactly
        unchanged float32 objective.
  [2.4] one step: zero_grad; renormalise W_dec rows; forward + loss; backward;
        W_dec.grad -= (W_dec.grad . w) w per row (w = the renormalised row);
        Adam (beta 0.9/0.999, eps 1e-8, no weight decay); then the scheduler:
        lr_t = lr * min(1, (t+1)/warmup) for step t = 0, 1, ...
        Adam (torch 1.13, single-tensor): k = step count (1-based);
          m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
          p -= (lr_t / (1 - b1^k)) * m / (sqrt(v) / sqrt(1 - b2^k) + eps).
"""
import collections

import torch


class RefSAE(torch.nn.Module):
    def __init__(self, d_in, d_sae):
        super().__init__()
        self.W_enc = torch.nn.Parameter(torch.zeros(d_in, d_sae))  # (D,S)
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))  # (S)
        self.W_dec = torch.nn.Parameter(torch.zeros(d_sae, d_in))  # (S,D)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))  # (D)

    def init_standard(self, seed):
        """[2.1] initialisation, from a seeded generator."""
        g = torch.Generator().manual_seed(seed)
        D, S = self.W_enc.shape
        with torch.no_grad():
            self.W_enc.copy_((torch.rand(D, S, generator=g) * 2 - 1) * (6.0 / S) ** 0.5)
            self.W_dec.copy_((torch.rand(S, D, generator=g) * 2 - 1) * (6.0 / D) ** 0.5)
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True))
            self.b_enc.zero_()
            self.b_dec.zero_()
        return self

    def encode(self, x):
        hidden_pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        return torch.relu(hidden_pre), hidden_pre

    def forward(self, x):
        f, hidden_pre = self.encode(x)
        return f @ self.W_dec + self.b_dec, f, hidden_pre

    def loss(self, x, dead=None, l1_coefficient=8e-5, mse_cls_coefficient=1.0):
        """x (B,T,D). Returns dict with loss, mse_loss, l1_loss, ghost_loss
        (0-dim tensors, loss differentiable) and x_hat, f, hidden_pre."""
        x_hat, f, hidden_pre = self(x)
        m = (x_hat - x).pow(2) / x.norm(dim=-1, keepdim=True)  # (B,T,D)
        ghost = torch.zeros(())
        if dead is not None and bool(dead.any()):
            residual = x - x_hat  # 1
            g = torch.exp(hidden_pre[..., dead]) @ self.W_dec[dead]  # 2
            scale = residual.norm(dim=-1) / (2 * g.norm(dim=-1) + 1e-6)  # 3
            g = g * scale.detach()[..., None]
            r = residual.detach()
            gm = (g - r).pow(2) / r.norm(dim=-1, keepdim=True)  # 4
            gm = gm * (m / (gm + 1e-6)).detach()  # 5
            ghost = gm.mean()  # 6
        if x.dim() == 3:
            m = torch.cat([m[:, :1] * mse_cls_coefficient, m[:, 1:]], dim=1)
        mse = m.mean()
        l1 = l1_coefficient * f.abs().sum(dim=-1).mean()
        return {"loss": mse + l1 + ghost, "mse_loss": mse, "l1_loss": l1, "ghost_loss": ghost,
                "x_hat": x_hat, "f": f, "hidden_pre": hidden_pre}


def geometric_median(points, eps=1e-6, maxiter=100, ftol=1e-20):
    """points (n, ...): each slice one point. Returns (median (...), n_iter)
    where n_iter counts the Weiszfeld updates made."""
    p = points.reshape(points.shape[0], -1)
    w = torch.ones(p.shape[0])
    med = (w[:, None] * p).sum(0) / w.sum()
    obj = ((p - med).norm(dim=1) * w).sum()
    it = 0
    for it in range(1, maxiter + 1):
        prev = obj
        nw = w / torch.clamp((p - med).norm(dim=1), min=eps)
        med = (nw[:, None] * p).sum(0) / nw.sum()
        obj = ((p - med).norm(dim=1) * w).sum()
        if abs(prev - obj) <= ftol * obj:
            break
    return med.reshape(points.shape[1:]), it


def b_dec_geometric_median(acts, **kw):
    """[2.3] acts (B,T,D) -> (b_dec (D), median (T,D), n_iter)."""
    med, it = geometric_median(acts, **kw)
    return med.mean(dim=0), med, it


class RefTrainer:
    def __init__(self, sae, lr=4e-4, warmup=500, l1_coefficient=8e-5, dead_feature_window=64,
                 use_ghost_grads=True, mse_cls_coefficient=1.0):
        self.sae = sae
        self.l1, self.window, self.ghost, self.cls = l1_coefficient, dead_feature_window, use_ghost_grads, mse_cls_coefficient
        self.opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                    foreach=False)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda t: min(1.0, (t + 1) / warmup))
        self.since_fired = torch.zeros(sae.W_enc.shape[1])
        self.t = 0

    def step(self, x):
        """One [2.4] training step on x (B,T,D). Returns an OrderedDict of
        everything a C implementation may want to compare."""
        s = self.sae
        out = collections.OrderedDict()
        out["lr"] = torch.tensor(self.opt.param_groups[0]["lr"])
        self.opt.zero_grad()
        with torch.no_grad():
            s.W_dec.div_(s.W_dec.norm(dim=1, keepdim=True))
        out["W_dec_renorm"] = s.W_dec.detach().clone()
        dead = (self.since_fired > self.window) if self.ghost else torch.zeros_like(self.since_fired, dtype=torch.bool)
        out["dead_mask"] = dead.to(torch.uint8)
        r = s.loss(x, dead, self.l1, self.cls)
        with torch.no_grad():
            fired = (r["f"] > 0).flatten(0, -2).any(dim=0)
            self.since_fired += 1
            self.since_fired[fired] = 0
        out["since_fired"] = self.since_fired.clone()
        r["loss"].backward()
        with torch.no_grad():
            w = s.W_dec
            par = (w.grad * w).sum(dim=1, keepdim=True)
            w.grad -= par * w
        for k in ("loss", "mse_loss", "l1_loss", "ghost_loss"):
            out[k] = r[k].detach().clone()
        out["f"] = r["f"].detach().clone()
        out["x_hat"] = r["x_hat"].detach().clone()
        for n, p in s.named_parameters():
            out["grad." + n] = p.grad.detach().clone()
        self.opt.step()
        self.sched.step()
        self.t += 1
        for n, p in s.named_parameters():
            out[n] = p.detach().clone()
            st = self.opt.state[p]
            out["adam.exp_avg." + n] = st["exp_avg"].clone()
            out["adam.exp_avg_sq." + n] = st["exp_avg_sq"].clone()
        out["adam.step"] = torch.tensor(float(self.opt.state[s.W_enc]["step"]))
        return out
