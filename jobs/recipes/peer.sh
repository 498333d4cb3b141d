#!/usr/bin/env bash
# peer.sh RECIPE: the PyTorch peer (../shared/peers) on recipe RECIPE's model and options (fashion-fast,
# fashion-cnn, fashion-short or fashion-best), with the same environment (EPOCHS, RANKS, OUT, SEED; PEER_DDP,
# PEER_ARGS: see common.sh) and the same closing lines (`time to P: S s`, `test accuracy: X`), to set beside the
# trainer's run of the same recipe.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  fashion-fast | fashion-cnn | fashion-short | fashion-best) PEER=1 exec "$here/$1.sh" ;;
  *) echo "usage: $0 fashion-fast|fashion-cnn|fashion-short|fashion-best" >&2; exit 2 ;;
esac
