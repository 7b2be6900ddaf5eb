#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md in one run: the kernel table (chunked XLA vs Pallas vs
# flash-linear-attention, each checked against the float32 recurrence), the same check on all
# five ops at head size 64, and the 20M exploration config's training tokens/s and MFU with
# the chunked and the Pallas kernels. About 6 minutes on one H200.
#
#     OUT=bench_results/gpu scripts/gpu_benchmarks.sh
#
# Needs this repository's dependencies importable (PYTHONPATH or an install) and, for the fla
# columns, PyTorch with CUDA and flash-linear-attention. Each step writes its own log and JSON
# under $OUT, so a step that fails or runs out of time leaves the others' figures.
set -uo pipefail
OUT=${OUT:-bench_results/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6}
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    "$PY" -c "import jax, sys; print(sys.version); print(jax.__version__, jax.devices())"
    "$PY" -m pip list 2>/dev/null | grep -i -E "^(jax|jaxlib|flax|torch|triton|fla|flash)"
} >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

STEPS=${STEPS:-kernels train20m_chunk train20m_pallas all_ops}  # the steps to run
# The shape (bf16, B=8, T=4096, H=16, K=V=128) and head size 64 (B=4, T=2048, H=8).
BIG="--batch=8 --seq_len=4096 --heads=16 --key_dim=128 --value_dim=128 --dtype=bfloat16 --check"
SMALL="--batch=4 --seq_len=2048 --heads=8 --key_dim=64 --value_dim=64 --dtype=bfloat16 --check"

step() {  # step NAME SECONDS COMMAND...: runs COMMAND with a time limit, logging to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | grep -v -E "^(I|W)[0-9]{4}" | tail -25
    echo "== $name: exit ${PIPESTATUS[0]}"
}

step kernels 220 "$PY" scripts/bench_kernels.py --ops=delta_rule,gated_delta_rule \
    --impls=chunk,pallas $BIG --output="$OUT/kernels.json"

# Not in the default steps: the block sweeps that filled pallas_kernels/tuning.py's K = 128 row
# (its backward at 64/8/2 does not fit an H200's shared memory) and the rows the first run
# did not reach: the gated delta rule at the shape, every op's backward at head size 64.
step tune128 230 "$PY" scripts/bench_kernels.py --ops=delta_rule --impls=pallas \
    --blocks=64:8:2,64:8:1,32:4:2,32:8:1 $BIG --warmup=1 --iters=5 --output="$OUT/tune128.json"
step gdn128 200 "$PY" scripts/bench_kernels.py --ops=gated_delta_rule --impls=chunk,pallas \
    --blocks=64:8:1,32:4:2 $BIG --warmup=1 --iters=5 --output="$OUT/gdn128.json"
# fla left out: its simple GLA backward autotunes past the step's limit, and fla 0.6.0 refuses
# the gated delta rule's backward with this image's Triton (BENCHMARKS.md).
step bwd64 120 "$PY" scripts/bench_kernels.py --ops=simple_gla,gla,delta_rule,gated_delta_rule \
    --impls=chunk,pallas --modes=fwd_bwd --fla=no $SMALL --warmup=1 --iters=5 --output="$OUT/bwd64.json"

for impl in chunk pallas; do
    step "train20m_$impl" ${TRAIN_SECONDS:-150} "$PY" scripts/train.py --config=configs/explore_20m.py \
        --config.train.kernel_impl="$impl" --config.train.steps=${TRAIN_STEPS:-120} --config.train.log_every=20 \
        --config.train.checkpoint_every=0 --config.data.eval_examples=128 \
        --workdir="/tmp/train20m_$impl" ${TRAIN_FLAGS:-}
    cat "/tmp/train20m_$impl/metrics.jsonl" >>"$OUT/train20m_$impl.log" 2>/dev/null
done

step all_ops 120 "$PY" scripts/bench_kernels.py \
    --ops=linear_attention,simple_gla,gla,delta_rule,gated_delta_rule --impls=chunk,pallas \
    $SMALL --iters=5 --output="$OUT/all_ops.json"
