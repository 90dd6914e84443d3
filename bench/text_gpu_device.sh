#!/usr/bin/env bash
# bench/text_gpu.py on a lent GPU machine, which reaches no package index and takes at most 64 MiB of
# files a call (the repository included).
#
#   bash bench/text_gpu_device.sh prepare   # here: wheels into .whl/, the model's config and tokenizer into .gpu/
#   bash bench/text_gpu_device.sh run       # there (device `run`, carry [".whl", ".gpu"]): both sides, then the table
#
# genloom's side runs on the transformers genloom pins (4.57, with its tokenizers, huggingface_hub and
# pydantic, installed from .whl/ into /tmp/site); the peer's side on the machine's own transformers.
# The model travels without its weights (98 MB): both sides fill its architecture with the same seeded
# random weights and generate a fixed number of tokens, which is what the throughput depends on.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    mkdir -p .whl .gpu/smollm2
    grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
    grep -qx '/.gpu/' .git/info/exclude || echo /.gpu/ >> .git/info/exclude
    for p in transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 pydantic==2.14.4 pydantic_core==2.50.5 \
             annotated-types==0.8.0 typing-inspection==0.4.5; do
      .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"
    done
    folder=$(PYTHONPATH=. .venv/bin/python -c "from infra.models.loader import prepare_text_model; print(prepare_text_model())")
    for f in config.json generation_config.json tokenizer.json tokenizer_config.json special_tokens_map.json chat_template.jinja; do
      cp "$folder/$f" .gpu/smollm2/
    done
    du -sh .whl .gpu
    ;;
  run)
    out=${OUT:-/tmp/text_gpu}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    set +e
    PYTHONPATH=/tmp/site:. timeout 240 python3 bench/text_gpu.py --side genloom --model .gpu/smollm2 --random-weights \
      --output "$out/genloom.json" > "$out/genloom.log" 2>&1
    echo "genloom side: exit $?"; grep -E '^\{|Error' "$out/genloom.log" | head -40
    timeout 240 python3 bench/text_gpu.py --side peer --model .gpu/smollm2 --random-weights \
      --output "$out/peer.json" > "$out/peer.log" 2>&1
    echo "peer side: exit $?"; grep -E '^\{|Error' "$out/peer.log" | head -40
    python3 bench/text_gpu.py --merge "$out/genloom.json" "$out/peer.json" --output "$out/text_gpu.json"
    ;;
  *)
    echo "usage: bash bench/text_gpu_device.sh prepare|run" >&2
    exit 2
    ;;
esac
