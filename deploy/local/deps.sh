#!/usr/bin/env bash
# Installs the system packages the build needs (librdkafka is compiled from the rdkafka-sys
# crate and links OpenSSL, zlib and zstd). Quick and silent when they are already there.
set -euo pipefail

need=()
for pkg in build-essential pkg-config libssl-dev zlib1g-dev libzstd-dev cmake curl time; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "deps: cargo is in ~/.cargo/bin but not on PATH; add it: export PATH=\$HOME/.cargo/bin:\$PATH" >&2
  else
    echo "deps: no Rust toolchain (cargo) found; install Rust (rustup) first" >&2
  fi
  exit 1
fi
