#!/usr/bin/env bash
# plot_metrics.sh METRICS.csv OUT.png: loss and accuracy per epoch, training and validation, from the CSV
# that `trainer train --metrics` appends to, drawn with gnuplot (installed with apt-get when missing,
# through sudo when not root). Exit codes as the trainer's: 2 usage, 3 bad input, 4 cannot write.
set -euo pipefail

usage() { echo "usage: $0 METRICS.csv OUT.png" >&2; exit 2; }
[ $# -eq 2 ] || usage
case "$1" in -h|--help) echo "usage: $0 METRICS.csv OUT.png"; exit 0 ;; esac
csv=$1 png=$2

die() { echo "plot_metrics: error: $2" >&2; exit "$1"; }
[ -r "$csv" ] || die 3 "$csv: cannot read"
head -1 "$csv" | grep -q '^epoch,step,loss,acc,val_loss,val_acc' \
  || die 3 "$csv: not a trainer metrics file (its header is not epoch,step,loss,acc,val_loss,val_acc,...)"

if ! command -v gnuplot >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "plot_metrics: installing gnuplot-nox" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The CSV is appended to by every run: a resumed run continues it, a run started again from epoch 1
# repeats epochs. The last row written for an epoch wins, and the epochs are drawn in order.
awk -F, 'NR > 1 && $1 ~ /^[0-9]+$/ { row[$1 + 0] = $0 } END { for (e in row) print row[e] }' "$csv" \
  | sort -t, -k1,1n >"$tmp/data.csv"
rows=$(wc -l <"$tmp/data.csv")
[ "$rows" -gt 0 ] || die 3 "$csv: no epoch rows yet"
# Validation columns are "nan" when the run had no --val/--val-split: plot those curves only when present.
has_val=$(awk -F, '$5 != "nan" && $5 != "" { n++ } END { print n + 0 }' "$tmp/data.csv")
first=$(head -1 "$tmp/data.csv" | cut -d, -f1)
last=$(tail -1 "$tmp/data.csv" | cut -d, -f1)
# The title says what a reader looks for first: the best validation epoch (or the last training loss).
best=$(awk -F, -v v="$has_val" '
  v > 0 && $5 != "nan" && (bl == "" || $5 + 0 < bl) { bl = $5 + 0; be = $1 }
  v > 0 && $6 != "nan" && (ba == "" || $6 + 0 > ba) { ba = $6 + 0; bae = $1 }
  { tl = $3 + 0; ta = $4 + 0; te = $1 }
  END {
    if (v > 0) printf "best val_loss %.4f (epoch %d), best val_acc %.4f (epoch %d)", bl, be, ba, bae
    else printf "last epoch: loss %.4f, acc %.4f", tl, ta
  }' "$tmp/data.csv")
# Accuracy near 1 would run along the frame: leave a little room above it.
acc_top=$(awk -F, '{ m = $4 > m ? $4 : m; if ($6 != "nan" && $6 > m) m = $6 } END { print (m > 0.97 ? "1.01" : "*") }' \
  "$tmp/data.csv")

terminal="pngcairo size 1200,480 font 'DejaVu Sans,11' linewidth 1.5"
gnuplot -e "set terminal pngcairo" 2>/dev/null || terminal="png size 1200,480"

{
  cat <<EOF
set terminal $terminal
set output '$tmp/out.png'
# Underscores in val_loss and file names are text, not subscripts.
set termoption noenhanced
set datafile separator ','
set datafile missing 'nan'
set multiplot layout 1,2 title "$(basename "$csv"): epochs $first-$last; $best" font ',13'
set grid lc rgb '#dddddd'
set key top right box opaque
set xlabel 'epoch'
set xrange [0.5:$last + 0.5]
# Whole epochs only: one tick each for short runs, gnuplot's choice (still integers) for long ones.
$([ "$last" -le 20 ] && echo "set xtics 1" || echo "set xtics format '%.0f'")
set style line 1 lc rgb '#1f77b4' pt 7 ps 0.8
set style line 2 lc rgb '#ff7f0e' pt 5 ps 0.8
set title 'loss (categorical cross-entropy)'
set ylabel 'loss'
EOF
  if [ "$has_val" -gt 0 ]; then
    echo "plot '$tmp/data.csv' using 1:3 with linespoints ls 1 title 'training', '' using 1:5 with linespoints ls 2 title 'validation'"
  else
    echo "plot '$tmp/data.csv' using 1:3 with linespoints ls 1 title 'training'"
  fi
  cat <<EOF
set title 'accuracy'
set ylabel 'accuracy'
set key bottom right
set yrange [*:$acc_top]
EOF
  if [ "$has_val" -gt 0 ]; then
    echo "plot '$tmp/data.csv' using 1:4 with linespoints ls 1 title 'training', '' using 1:6 with linespoints ls 2 title 'validation'"
  else
    echo "plot '$tmp/data.csv' using 1:4 with linespoints ls 1 title 'training'"
  fi
  echo "unset multiplot"
} >"$tmp/plot.gp"

gnuplot "$tmp/plot.gp" || die 4 "gnuplot failed on $csv"
cp "$tmp/out.png" "$png" 2>/dev/null || die 4 "$png: cannot write"
echo "wrote $png ($rows epochs)"
