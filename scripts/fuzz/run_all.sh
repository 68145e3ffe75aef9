#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS seconds (default 600), two at a time, on the stable
# toolchain (RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz passes). Corpora grow in
# fuzz/corpus/<target>/, crashes land in fuzz/artifacts/<target>/, logs in fuzz/logs/.
# Usage: scripts/fuzz/run_all.sh [seconds] [target...]
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokenizer safetensors torch hand_info manifest image)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/clip-handid/target-fuzz}"
RUSTC_BOOTSTRAP=1 cargo fuzz build -s none --codegen-units 16 --target-dir "$CARGO_TARGET_DIR"
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
mkdir -p logs
run() {
    local target=$1
    mkdir -p "corpus/$target" "artifacts/$target"
    # The image target may legitimately decode images of up to 100 million pixels.
    local rss=2048
    [ "$target" = image ] && rss=4096
    nice "$bin/$target" "corpus/$target" -max_total_time="$seconds" -timeout=30 -rss_limit_mb="$rss" \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"logs/$target.log" 2>&1 || true
    echo "$target: $(grep -E 'stat::number_of_executed_units|stat::new_units_added' "logs/$target.log" | tr '\n' ' ')"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[i]}" &
    if [ $((i + 1)) -lt ${#targets[@]} ]; then run "${targets[i + 1]}" & fi
    wait
done
