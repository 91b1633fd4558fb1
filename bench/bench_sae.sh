#!/bin/sh
# bench_sae.sh - SAE encode of ViT-B/16-shaped activations (197 tokens, 768 ->
# 49152, a random SAE scaled so that L0 is about 150 per token) to sparse form:
# patchsae's sae_encode_sparse (GEMM + b_enc + ReLU + CSR compaction) against
# PyTorch's dense encode ReLU((x - b_dec) W_enc + b_enc) (Debian python3-torch,
# 2 threads), batch 1 and 8, images/s, side by side in one run. OpenBLAS runs
# with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (AVX-512 on this machine
# kind; performance.md) and prints its core name next to each figure. Each
# figure also gives the CPU time per image, which a busy shared machine
# disturbs less than the wall clock: quote medians and ratios, not absolutes.
#   sh bench/bench_sae.sh [BUILD]
set -eu
BUILD=${1:-build}
W=$(mktemp -d /tmp/patchsae-bench-XXXXXX)
trap 'rm -rf "$W"' EXIT
PKGS="openblas jansson libpng libjpeg libsixel zlib libzip"
cc -O2 -Iinclude bench/bench_sae.c "$BUILD/libps.a" $(pkg-config --cflags --libs $PKGS) -lpthread -lm -o "$W/bench_sae"
RUN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
echo "SAE encode, 197 tokens x 768 -> 49152 latents per image (14.87 GFLOP), to CSR"
$RUN "$W/bench_sae" 768 49152 197 1 7
$RUN "$W/bench_sae" 768 49152 197 8 3
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    $RUN /usr/bin/python3 - <<'PY'
import statistics, time, torch
torch.set_num_threads(2)
D, S, T = 768, 49152, 197
g = torch.Generator().manual_seed(1)
a = (3.0 / D) ** 0.5
W_enc = (torch.rand(D, S, generator=g) * 2 - 1) * a
b_enc = -2.75 + 0.1 * (torch.rand(S, generator=g) * 2 - 1)
b_dec = 0.5 * (torch.rand(D, generator=g) * 2 - 1)
for b, reps in ((1, 7), (8, 3)):
    x = b_dec + torch.randn(b * T, D, generator=g)
    with torch.no_grad():
        f = torch.relu((x - b_dec) @ W_enc + b_enc)
        ts, cs = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            f = torch.relu((x - b_dec) @ W_enc + b_enc)
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
    t, c = statistics.median(ts), statistics.median(cs) / b
    print("torch dense encode, batch %d: %.2f images/s (median of %d, %.1f ms per batch, L0 %.1f; "
          "torch %s, 2 threads)\n    cpu %.1f ms per image -> %.1f images/s on 2 idle cores"
          % (b, b / t, reps, 1e3 * t, (f > 0).sum().item() / (b * T), torch.__version__,
             1e3 * c, 2 / c))
PY
else
    echo "torch not importable with /usr/bin/python3: PyTorch side skipped"
fi
