#!/usr/bin/env bash
# GPU check of socwire's trainer (issue #23, item 5): builds `socwire` with --features cuda,
# fine-tunes one base model on the GPU and the same job on the CPU, and prints the device
# line, AP before and after on each, and the CPU-versus-GPU difference. Fails when the GPU run
# did not train on the GPU (a CPU fallback), when the APs differ by more than 0.02, or when the
# whole check passes its deadline (8 minutes by default).
#
# Needs: an NVIDIA GPU of compute capability 8.0 or newer (the candle 0.9.2 CUDA build cannot
# compile below it; docs/decisions/0014), nvidia-smi, the CUDA toolkit (nvcc, cuBLAS, cuRAND),
# and a Rust toolchain with the crates available (online, or vendored with CARGO_HOME or
# .cargo/config.toml pointing at them). Run from the repository root:
#   scripts/gpu-check.sh            # writes its files under target/gpu-check
# Environment: GPU_CHECK_DEADLINE_S (480), GPU_CHECK_SEED (1), GPU_CHECK_MAX_DIFF (0.02).
set -euo pipefail

deadline=${GPU_CHECK_DEADLINE_S:-480}
seed=${GPU_CHECK_SEED:-1}
max_diff=${GPU_CHECK_MAX_DIFF:-0.02}
work=target/gpu-check
started=$SECONDS

fail() { echo "gpu-check: FAIL: $*" >&2; exit 1; }
left() { echo $((deadline - (SECONDS - started))); }
within() { # within LABEL COMMAND...: runs COMMAND with what is left of the deadline
    local label=$1; shift
    local budget; budget=$(left)
    [ "$budget" -gt 0 ] || fail "deadline of ${deadline}s passed before $label"
    timeout "$budget" "$@" || {
        local rc=$?
        [ "$rc" -eq 124 ] && fail "$label did not finish within the ${deadline}s deadline"
        fail "$label failed (exit $rc)"
    }
}

for tool in nvidia-smi nvcc cargo timeout tar awk; do
    command -v "$tool" >/dev/null || fail "$tool is not on PATH (see the header of this script)"
done
gpu=$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader | head -n 1)
[ -n "$gpu" ] || fail "nvidia-smi lists no GPU"
cap=$(echo "$gpu" | awk -F', *' '{ split($2, v, "."); print v[1] * 10 + v[2] }')
echo "gpu-check: GPU $gpu (CUDA_COMPUTE_CAP=$cap), $(nvcc --version | tail -n 1)"
[ "$cap" -ge 80 ] || fail "compute capability $cap is below 80: socwire's CUDA build (candle-kernels 0.9.2) cannot compile for it"

export CUDA_COMPUTE_CAP=$cap CARGO_INCREMENTAL=0
t=$SECONDS
within "the CUDA build" cargo build --release --locked -p socwire --features cuda
echo "gpu-check: built in $((SECONDS - t)) s"
bin=target/release/socwire

rm -rf "$work" && mkdir -p "$work"
# The demo's base model (pre-trained by the trainer itself, here on the GPU), unpacked.
t=$SECONDS
within "pre-training the base model" "$bin" ml demo-command --data-dir "$work/data" >/dev/null
tar -xzf "$work/data/ml/local-assets/clara-ct-base.tar.gz" -C "$work"
base="$work/model/base.safetensors"
echo "gpu-check: base model pre-trained in $((SECONDS - t)) s"

run() { # run LABEL DEVICE: one fine-tune of the same job on DEVICE
    local label=$1 device=$2 t=$SECONDS budget
    budget=$(left)
    [ "$budget" -gt 0 ] || fail "deadline of ${deadline}s passed before the $label fine-tune"
    if ! SOCWIRE_TRAINER_DEVICE=$device timeout "$budget" \
        "$bin" ml fine-tune --job-id "gpu-check-$label" --base-model "$base" --seed $((seed + 1000)) \
        --out "$work/$label" >"$work/$label.jsonl" 2>"$work/$label.log"; then
        tail -n 5 "$work/$label.log" >&2
        fail "the $label fine-tune failed or passed the ${deadline}s deadline (log: $work/$label.log)"
    fi
    echo "gpu-check: $label fine-tune took $((SECONDS - t)) s"
}
ap() { awk -F': *' -v k="\"$2\"" '$1 ~ k { gsub(/[ ,]/, "", $2); print $2 }' "$work/$1/result.json"; }

run gpu cuda
device_line=$(grep -m 1 'trains on' "$work/gpu.log" || true)
echo "gpu-check: device line: ${device_line:-<none>}"
case "$device_line" in
    *"CUDA GPU"*) ;;
    *) fail "the GPU run did not train on the GPU (CPU fallback?): ${device_line:-no device line}" ;;
esac
run cpu cpu
grep -q 'trains on the CPU' "$work/cpu.log" || fail "the CPU run did not say it trains on the CPU"

gb=$(ap gpu averagePrecisionBefore); ga=$(ap gpu averagePrecisionAfter)
cb=$(ap cpu averagePrecisionBefore); ca=$(ap cpu averagePrecisionAfter)
[ -n "$gb" ] && [ -n "$ga" ] && [ -n "$cb" ] && [ -n "$ca" ] || fail "a result.json lacks AP figures"
printf 'gpu-check: %-6s %-10s %-10s\n' device ap_before ap_after
printf 'gpu-check: %-6s %-10.4f %-10.4f\n' gpu "$gb" "$ga" cpu "$cb" "$ca"
awk -v gb="$gb" -v ga="$ga" -v cb="$cb" -v ca="$ca" -v m="$max_diff" 'BEGIN {
    d1 = gb - cb; if (d1 < 0) d1 = -d1; d2 = ga - ca; if (d2 < 0) d2 = -d2;
    printf "gpu-check: |GPU - CPU| AP before %.4f, after %.4f (allowed %s)\n", d1, d2, m;
    exit (d1 <= m && d2 <= m) ? 0 : 1 }' || fail "CPU and GPU APs differ by more than $max_diff"
echo "gpu-check: PASS in $((SECONDS - started)) s"
