#!/usr/bin/env bash
# Get the working tree ready for a GPU device call (scripts/gpu_session.sh), and back.
#
#   scripts/device_carry.sh prepare GLAS_ZIP_OR_FOLDER   # import + pack train split, park weights
#   ...device run with carry [".pack/glas_train"] ...
#   scripts/device_carry.sh restore                      # put the shipped weights back
#
# The device takes at most 64 MiB of working tree. The packed training split (85 GlaS images as
# lossless WebP, ~56 MB) and the shipped weights (~57 MB) do not fit together, and the GPU run
# does not need the shipped weights, so `prepare` moves them out of the tree (to .parked/, which
# git ignores) and `restore` moves them back. Nothing here needs a GPU.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
WEIGHTS=src/micronet/models/weights
case "${1:-}" in
  prepare)
    src=${2:?give the GlaS release zip or folder}
    [ -f data/glas/manifest.json ] || micronet data glas --source "$src" --dest data/glas
    # an existing pack is kept only if it verifies (older packs listed three splits)
    if ! micronet data verify .pack/glas_train >/dev/null 2>&1; then
      rm -rf .pack/glas_train
      micronet data pack --data data/glas --dest .pack/glas_train
    fi
    mkdir -p .parked
    for f in "$WEIGHTS"/*.safetensors; do [ -e "$f" ] && mv "$f" .parked/; done
    du -sh .pack/glas_train
    git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | awk '{printf "tracked files: %.1f MB\n", $1/1e6}'
    echo "shipped weights parked in .parked/; run 'scripts/device_carry.sh restore' afterwards"
    ;;
  restore)
    for f in .parked/*.safetensors; do [ -e "$f" ] && mv "$f" "$WEIGHTS"/; done
    git diff --quiet -- "$WEIGHTS" && echo "shipped weights restored (unchanged)"
    ;;
  *)
    sed -n 2,12p "$0"; exit 2 ;;
esac
