# SPDX-License-Identifier: MIT
"""gen_sae_train_fixture.py - writes tests/data/sae_train/: a tiny SAE, its
geometric-median b_dec initialisation and four PatchSAE training steps as
computed by tools/refsae.py (PyTorch autograd + torch.optim.Adam), so the C
trainer can be checked step by step. Development-time only; deterministic.

  nice -n 10 /usr/bin/python3 tools/gen_sae_train_fixture.py [OUTDIR]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refclip as rc  # noqa: E402  (safetensors writer)
import refsae  # noqa: E402

torch.set_num_threads(1)

D, S, B, T, N_STEPS = 8, 32, 2, 5, 4
CFG = dict(lr=1e-2, warmup=3, l1_coefficient=5e-3, dead_feature_window=1, mse_cls_coefficient=1.0)
DEAD = [3, 11, 20, 27]  # latents given b_enc = -4 so that they never fire


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data", "sae_train")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(2024)
    mu = torch.randn(D, generator=g) * 2.0
    A = torch.randn(D, D, generator=g) * 0.6
    pos = torch.randn(T, D, generator=g) * 0.5  # a per-token offset, like positional structure

    def batch(n):
        return mu + pos + torch.randn(n, T, D, generator=g) @ A

    gm_acts = batch(4)
    gm_acts[3] += 10.0  # an outlier image: the geometric median ignores it, the mean would not
    b_dec, med, n_iter = refsae.b_dec_geometric_median(gm_acts, eps=1e-6, maxiter=100, ftol=1e-20)
    assert (b_dec - gm_acts.mean(dim=(0, 1))).norm() > 1.0

    sae = refsae.RefSAE(D, S).init_standard(seed=5)
    with torch.no_grad():
        sae.b_dec.copy_(b_dec)
        sae.b_enc.copy_(torch.randn(S, generator=g) * 0.1)
        sae.b_enc[DEAD] = -4.0
    tensors = {"gm.acts": gm_acts, "gm.median": med, "gm.b_dec": b_dec}
    for n, p in sae.named_parameters():
        tensors["init." + n] = p.detach().clone()
    batches = [batch(B) for _ in range(N_STEPS)]
    for k, x in enumerate(batches):
        tensors["batch.%d" % k] = x

    tr = refsae.RefTrainer(sae, use_ghost_grads=True, **CFG)
    ghost_steps = []
    for k, x in enumerate(batches):
        out = tr.step(x)
        if out["dead_mask"].any():
            ghost_steps.append(k)
            assert out["ghost_loss"] > 0
            assert out["grad.W_dec"][out["dead_mask"].bool()].abs().sum() > 0
        for n, v in out.items():
            tensors["step%d.%s" % (k, n)] = v
        print("step %d lr %.5f loss %.6f mse %.6f l1 %.6f ghost %.6f dead %d" % (
            k, out["lr"], out["loss"], out["mse_loss"], out["l1_loss"], out["ghost_loss"], int(out["dead_mask"].sum())))
    assert ghost_steps == [2, 3], ghost_steps
    meta = dict(CFG, d_in=D, d_sae=S, batch=B, tokens=T, n_steps=N_STEPS, gm_iters=n_iter, gm_eps=1e-6,
                gm_maxiter=100, gm_ftol=1e-20, adam_betas="0.9,0.999", adam_eps=1e-8, ghost_steps="2,3")
    rc.st_write(os.path.join(d, "sae_train.safetensors"), tensors, metadata=meta)
    print("geometric median: %d iterations" % n_iter)


if __name__ == "__main__":
    main()
