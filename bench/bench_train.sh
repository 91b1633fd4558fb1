#!/bin/sh
# bench_train.sh - one PatchSAE training step, 768 -> 49152 SAE, 4096 tokens a
# step, Adam, ghost grads: patchsae's train_step (bench_train.c: synthetic
# activations, an SAE in a trained-like state with L0 about 150 and 2 % of
# the latents dead) against PyTorch (tools/refsae.py, the reference the
# tests match; torch.set_num_threads(2)), tokens/s side by side in one run.
# OpenBLAS runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (AVX-512 on
# this machine kind; performance.md) and prints its core name next to each
# figure. Machines here are shared: quote medians and ratios, not absolutes.
#   sh bench/bench_train.sh [BUILD] [TORCH_STEPS]
set -eu
BUILD=${1:-build}
TORCH_STEPS=${2:-2}
W=$(mktemp -d /tmp/patchsae-bench-XXXXXX)
trap 'rm -rf "$W"' EXIT
PKGS="openblas jansson libpng libjpeg libsixel zlib"
cc -O2 -std=c11 -Iinclude bench/bench_train.c "$BUILD/libps.a" $(pkg-config --cflags --libs $PKGS) -lpthread -lm -o "$W/bench_train"
RUN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
echo "SAE training step, PatchSAE recipe, 768 -> 49152, 4096 tokens"
echo "machine load before: $(cut -d' ' -f1-3 /proc/loadavg)"
$RUN "$W/bench_train" 768 49152 4096 5 0.02
$RUN "$W/bench_train" 768 49152 4096 5 0
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    $RUN /usr/bin/python3 - "$TORCH_STEPS" <<'PY'
import os, statistics, sys, time
import torch
sys.path.insert(0, "tools")
import refsae
torch.set_num_threads(2)
steps = int(sys.argv[1])
D, S, B, T = 768, 49152, 16, 256
sae = refsae.RefSAE(D, S).init_standard(seed=1)
tr = refsae.RefTrainer(sae)
tr.since_fired[-int(0.02 * S):] = 1000  # 2 % dead: ghost grads run
x = torch.randn(B, T, D) + 3 * torch.randn(D)


def step():  # RefTrainer.step without the clones it keeps for the fixture
    tr.opt.zero_grad()
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))
    dead = tr.since_fired > tr.window
    r = sae.loss(x, dead, tr.l1, tr.cls)
    with torch.no_grad():
        fired = (r["f"] > 0).flatten(0, -2).any(dim=0)
        tr.since_fired += 1
        tr.since_fired[fired] = 0
    r["loss"].backward()
    with torch.no_grad():
        w = sae.W_dec
        w.grad -= (w.grad * w).sum(dim=1, keepdim=True) * w
    tr.opt.step()
    tr.sched.step()


ts = []
for k in range(1 + steps):
    t0 = time.perf_counter(); step(); dt = time.perf_counter() - t0
    if k:
        ts.append(dt)
t = statistics.median(ts)
print("pytorch   768 -> 49152, 4096 tokens a step, 2%% dead (ghost grads): %.0f tokens/s "
      "(median of %d steps, %.1f s a step; torch %s, 2 threads, refsae's loss + Adam)"
      % (B * T / t, steps, t, torch.__version__))
PY
else
    echo "torch not importable with /usr/bin/python3: PyTorch side skipped"
fi
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
