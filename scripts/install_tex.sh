#!/usr/bin/env bash
# Install what `python -m fewmm.paper build` needs to make paper/main.pdf, from Debian/Ubuntu's
# TeX Live: pdflatex (texlive-latex-base), the packages the paper uses (geometry, graphicx, url,
# amsmath: texlive-latex-base / -recommended) and latexmk. Run as root (or with sudo):
#     sudo bash scripts/install_tex.sh
# Measured on the project's Debian 12 machine: 18 packages, 48 MB of archives, 24.6 s for
# apt-get update + install (33 MB of the archives were already in apt's cache).
set -euo pipefail
if command -v latexmk >/dev/null && command -v pdflatex >/dev/null; then
  echo "[install_tex] latexmk and pdflatex are already installed"; exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "[install_tex] no apt-get: install a TeX distribution with pdflatex and latexmk (TeX Live, MiKTeX, MacTeX) yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
start=$(date +%s)
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
  texlive-latex-base texlive-latex-recommended latexmk
echo "[install_tex] done in $(( $(date +%s) - start )) s"
