#!/usr/bin/env bash
# Editor support, end to end: `sprsc fmt --check` keeps recipes/ formatted, VS Code's own
# TextMate tokenizer checks the grammar's scopes, and a real LSP client (pytest-lsp) drives
# `sprsc lsp` over stdio. Installs what it needs under target/editor-deps (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${SPRSC_BIN:-target/debug/sprsc}"
[ -x "$BIN" ] || cargo build
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

echo "== sprsc fmt --check recipes/*.sprs"
"$BIN" fmt --check recipes/*.sprs

echo "== editor test dependencies"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
DEPS=target/editor-deps
mkdir -p "$DEPS/npm"
(cd "$DEPS/npm" && { [ -f package.json ] || npm init -y >/dev/null; } &&
  npm install --no-audit --no-fund --silent vscode-textmate@9.3.2 vscode-oniguruma@2.0.1)
[ -x "$DEPS/venv/bin/python" ] || python3 -m venv "$DEPS/venv"
"$DEPS/venv/bin/pip" install -q --disable-pip-version-check pytest-lsp==1.0.1

echo "== TextMate grammar (vscode-textmate + vscode-oniguruma)"
NODE_PATH="$PWD/$DEPS/npm/node_modules" node --test tests/editors/grammar.test.js

echo "== language server (pytest-lsp driving $BIN lsp)"
# The summary includes the diagnostics latency after a change on the largest recipe.
SPRSC_BIN="$BIN" SPRSC_LATENCY_OUT="$PWD/target/lsp-latency.txt" PYTHONDONTWRITEBYTECODE=1 \
  "$DEPS/venv/bin/python" -m pytest -q -p no:cacheprovider tests/editors
