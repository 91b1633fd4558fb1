#!/bin/sh
# bench_clip.sh - CLIP ViT-B/16 image forward: patchsae (random weights from
# `patchsae init`) against torchvision's vit_b_16 (random weights, Debian
# python3-torch, 2 threads), batch 1 and 8, images/s, side by side in one run.
# OpenBLAS runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (AVX-512 on
# this machine kind; performance.md) and prints its core name next to each
# figure. Machines here are shared: quote medians and ratios, not absolutes.
#   sh bench/bench_clip.sh [BUILD]
set -eu
BUILD=${1:-build}
W=$(mktemp -d /tmp/patchsae-bench-XXXXXX)
trap 'rm -rf "$W"' EXIT
PKGS="openblas jansson libpng libjpeg libsixel zlib"
cc -O2 -Iinclude bench/bench_clip.c "$BUILD/libps.a" $(pkg-config --cflags --libs $PKGS) -lpthread -lm -o "$W/bench_clip"
"$BUILD/patchsae" init --arch vit-b-16 --seed 1 -o "$W/b16"
RUN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
echo "ViT-B/16, 224x224, hook at layer 10, embeddings included"
$RUN "$W/bench_clip" "$W/b16" 1 7
$RUN "$W/bench_clip" "$W/b16" 8 3
if /usr/bin/python3 -c 'import torchvision' 2>/dev/null; then
    $RUN /usr/bin/python3 - <<'PY'
import time, statistics, torch, torchvision
torch.set_num_threads(2)
m = torchvision.models.vit_b_16().eval()
for b, reps in ((1, 7), (8, 3)):
    x = torch.randn(b, 3, 224, 224)
    with torch.no_grad():
        m(x)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); m(x); ts.append(time.perf_counter() - t0)
    t = statistics.median(ts)
    print("torchvision vit_b_16 batch %d: %.2f images/s (median of %d, %.1f ms per batch; torch %s, 2 threads)"
          % (b, b / t, reps, 1e3 * t, torch.__version__))
PY
else
    echo "torchvision not importable with /usr/bin/python3: PyTorch side skipped"
fi
