# Shared by the DAG tests (test-pipeline.sh, test-reliability.sh): what a
# final artifact is, and how two runs' results are compared. Needs BIN
# (the release tools' folder).

# Final artifacts (tensor files and metrics) relative to a root. Hidden
# files and folders are a killed writer's temporaries (a stage stages its
# output there and renames it into place), never final paths.
finals() { (cd "$1" && find . -name '.?*' -prune -o \( -name '*.npz' ! -name '*.ckpt.npz' -o -name 'metrics.json' \) -print | sort); }

# Same set of final artifacts, equal tensors (zero tolerance) and metrics.
same_results() {
    local a=$1 b=$2 f
    if [ "$(finals "$a")" != "$(finals "$b")" ]; then
        echo "  file sets differ:"; diff <(finals "$a") <(finals "$b") | head -10; return 1
    fi
    for f in $(finals "$a"); do
        case $f in
        *.npz) $BIN/tensors diff "$a/$f" "$b/$f" --tol 0 >/dev/null 2>&1 || { echo "  differs: $f"; return 1; } ;;
        *.json) cmp -s "$a/$f" "$b/$f" || { echo "  differs: $f"; return 1; } ;;
        esac
    done
}

# Every file at a final path opens as a whole artifact.
all_readable() {
    local root=$1 f
    for f in $(finals "$root"); do
        case $f in
        *.npz) $BIN/tensors show "$root/$f" >/dev/null 2>&1 || { echo "  unreadable: $f"; return 1; } ;;
        *.json) python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$root/$f" || { echo "  unreadable: $f"; return 1; } ;;
        esac
    done
}
