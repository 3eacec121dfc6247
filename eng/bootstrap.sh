#!/usr/bin/env bash
# Makes this machine able to load TorchSharp 0.107's native library.
# libLibTorchSharp.so needs GLIBCXX_3.4.32 (libstdc++ from GCC 13+); Debian 12 ships 3.4.30.
# On Debian 12 we take libstdc++6 from the next release (trixie), pinned low so nothing else moves.
# Idempotent: when the symbol is present it returns at once.
set -euo pipefail

need=GLIBCXX_3.4.32

have_symbol() {
  local lib
  for lib in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib/aarch64-linux-gnu/libstdc++.so.6 /usr/lib64/libstdc++.so.6 /usr/lib/libstdc++.so.6; do
    if [ -e "$lib" ] && grep -aq "$need" "$lib"; then return 0; fi
  done
  return 1
}

if have_symbol; then exit 0; fi

if [ -r /etc/debian_version ] && grep -q '^12' /etc/debian_version; then
  src=/etc/apt/sources.list.d/debian.sources
  dst=/etc/apt/sources.list.d/llavainterp-trixie.sources
  pin=/etc/apt/preferences.d/llavainterp-trixie
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if [ ! -r "$src" ]; then
    echo "bootstrap: $need is missing and $src was not found; install libstdc++6 from GCC 13 or newer." >&2
    exit 1
  fi
  echo "bootstrap: $need missing; installing libstdc++6 from Debian trixie (pinned at priority 100)" >&2
  # First stanza only (up to the first blank line), suite bookworm -> trixie, no -updates/-security suites.
  awk 'BEGIN{RS="";ORS="\n"} NR==1{print; exit}' "$src" \
    | sed -E 's/^Suites:.*/Suites: trixie/' > /tmp/llavainterp-trixie.sources
  $sudo cp /tmp/llavainterp-trixie.sources "$dst"
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /tmp/llavainterp-trixie.pref
  $sudo cp /tmp/llavainterp-trixie.pref "$pin"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t trixie libstdc++6 >/dev/null
  if have_symbol; then
    echo "bootstrap: $need now available" >&2
    exit 0
  fi
  echo "bootstrap: installing libstdc++6 from trixie did not provide $need" >&2
  exit 1
fi

echo "bootstrap: this system's libstdc++ lacks $need, which TorchSharp 0.107's native library (libLibTorchSharp.so) needs." >&2
echo "bootstrap: install libstdc++ from GCC 13 or newer, then run again." >&2
exit 1
