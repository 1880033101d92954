#!/usr/bin/env bash
# Plot local round-trip latency percentiles (PNG, gnuplot).
#   bench/plot_latency.sh [OUT.png] [CONFIG]
# Runs `chimaera_bench local-lat --samples` against a running runtime, then plots.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-latency.png}
conf=${2:-$here/../config/chimaera.yaml}
bin=${CHI_BIN_DIR:-$here/../build/bin}
command -v gnuplot >/dev/null || { echo "gnuplot is not installed (apt-get install gnuplot-nox)"; exit 1; }
data=$(mktemp)
trap 'rm -f "$data"' EXIT
"$bin/chimaera_bench" local-lat --config "$conf" --samples "$data"
gnuplot <<GP
set terminal pngcairo size 900,500
set output "$out"
set title "chimaera local noop round trip (1 worker, 1 client thread)"
set xlabel "percentile"
set ylabel "latency (ns)"
set logscale y
set grid
set xtics ("0" 0, "50" 1, "90" 2, "99" 3, "99.9" 4, "99.99" 5, "max" 6)
plot "< awk '\$1==0||\$1==50||\$1==90||\$1==99||\$1==99.9||\$1==99.99||\$1==100 {print \$2}' $data" using 0:1 with linespoints lw 2 title "round trip"
GP
echo "wrote $out"
