#!/usr/bin/env bash
# The sandbox walk-through, end to end, in a temporary folder.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
biomedvr sandbox make blood --task blood-smear --train-per-class 24 --test-per-class 40 --seed 0
biomedvr fit blood --shots 8 --backbone sandbox --out blood.safetensors
biomedvr eval blood --adapter blood.safetensors --plots blood-plots
biomedvr predict blood/test --adapter blood.safetensors --top-k 2 --format csv > predictions.csv
head -3 predictions.csv
biomedvr info blood.safetensors
