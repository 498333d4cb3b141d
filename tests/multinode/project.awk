# project.awk: weak-scaling projection from bench_network.sh's measurements (awk -f project.awk fit.txt
# summary.txt [tcp.txt]). tcp.txt: "RATE send G Gbit/s" (one TCP stream, no MPI); fit.txt: "LINK small_us S a_us A beta_ns_per_byte B GBps G Gbit R" per link (shm, veth, 10gbit,
# 1gbit); summary.txt: "compute MODEL PARAMS THREADS IMG_PER_S" (1 rank, 1 thread and all cores) and
# "share MODEL LINK SHARE% AR_MS IMG_PER_S".
# Model (alpha-beta): one message of n bytes costs alpha + n*beta; a ring all-reduce over p nodes costs
#   t(p) = 2(p-1)*alpha + 2(p-1)/p * n * beta,
# alpha = the 4-byte all-reduce across two hosts over TCP (one exchange: an upper bound of the per-message
# cost), beta = 8 / (eta * R) per byte on an R bit/s network, eta = the fraction of the tbf rate that the
# all-reduce reached at 1 and 10 Gbit/s. A step computes b images per rank in b*c seconds (c: one rank with
# one thread, the steadiest number on a shared machine; a rank with k cores is up to k times faster, and
# needs a batch up to k times larger) and then all-reduces the gradient (4 bytes per parameter), no overlap:
# efficiency E = b*c / (b*c + t(p)); the per-rank batch for E >= 90% is b >= 9 t(p) / c.
function ceil(x) { return (x == int(x)) ? x : int(x) + 1 }
function ring(p, n, beta) { return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta }
FILENAME ~ /fit\.txt$/ { for (i = 2; i < NF; i += 2) fit[$1, $i] = $(i + 1); next }
FILENAME ~ /tcp\.txt$/ { if ($2 == "send") tcp[$1] = $3; next }
$1 == "compute" && $4 == 1 { models[++nm] = $2; params[$2] = $3; c[$2] = 1 / $5; next }
$1 == "compute" { cn[$2] = 1 / $5; threads = $4; next }
$1 == "share" { share[$2, $3] = $4; ar_ms[$2, $3] = $5; next }
END {
  alpha = fit["veth", "small_us"] * 1e-6
  eta = (fit["10gbit", "Gbit"] / 10 + fit["1gbit", "Gbit"] / 1) / 2
  printf "Fitted: alpha = %.1f us per message (TCP between two hosts, 4-byte all-reduce); the all-reduce moved " \
         "%.2f Gbit/s through a 10 Gbit/s tbf link and %.3f Gbit/s through a 1 Gbit/s one, so beta = 8 / (%.2f R) " \
         "s per byte on an R bit/s network. Shared memory on one host: %.1f GB/s.\n\n", \
         alpha * 1e6, fit["10gbit", "Gbit"], fit["1gbit", "Gbit"], eta, fit["shm", "GBps"]
  if (("none" in tcp) && ("10gbit" in tcp) && ("1gbit" in tcp))
    printf "One TCP stream without MPI carries %.1f Gbit/s over the veth pair, %.2f through the 10 Gbit/s " \
           "tbf and %.3f through the 1 Gbit/s one.\n\n", tcp["none"], tcp["10gbit"], tcp["1gbit"]
  print "| preset | params | gradient | compute per image, 1 rank: 1 / " threads " threads | 2 hosts, 1 Gbit/s: all-reduce measured / model | all-reduce share at 32 images per rank (veth / 10 / 1 Gbit/s) |"
  print "|---|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nm; i++) {
    m = models[i]; n = 4 * params[m]
    printf "| %s | %d | %.2f MB | %.3f / %.3f ms | %.1f / %.1f ms | %s / %s / %s |\n", m, params[m], n / 1e6, c[m] * 1e3, cn[m] * 1e3, \
      ar_ms[m, "1gbit"], (fit["1gbit", "small_us"] * 1e-6 + n * fit["1gbit", "beta_ns_per_byte"] * 1e-9) * 1e3, \
      share[m, "veth"], share[m, "10gbit"], share[m, "1gbit"]
  }
  print ""
  print "Projected weak scaling (ring all-reduce, no overlap; a rank computes as 1 thread here): all-reduce " \
        "time t, efficiency at 32 images per rank, and the per-rank batch that keeps efficiency at 90% or more."
  print ""
  print "| preset | nodes | 10 Gbit/s: t, E(32), batch | 25 Gbit/s: t, E(32), batch | 100 Gbit/s: t, E(32), batch |"
  print "|---|---:|---:|---:|---:|"
  split("8 64 512", ps, " "); split("10 25 100", rs, " ")
  for (i = 1; i <= nm; i++) {
    m = models[i]; n = 4 * params[m]
    for (k = 1; k <= 3; k++) {
      p = ps[k]; line = "| " m " | " p
      for (j = 1; j <= 3; j++) {
        beta = 8 / (eta * rs[j] * 1e9)
        t = ring(p, n, beta)
        e = 32 * c[m] / (32 * c[m] + t)
        line = line sprintf(" | %.2f ms, %.0f%%, %d", t * 1e3, 100 * e, ceil(9 * t / c[m]))
      }
      print line " |"
    }
  }
  # At 512 nodes the ring's 2(p-1) latency terms dominate small gradients; a log-p all-reduce
  # (Rabenseifner: recursive halving then doubling, 2 log2(p) messages, same bandwidth term) avoids them.
  print ""
  printf "With a log-p all-reduce (Rabenseifner: 2 log2(p) messages instead of 2(p-1), same bytes), 512 nodes:"
  for (i = 1; i <= nm; i++) {
    m = models[i]; n = 4 * params[m]; line = ""
    for (j = 1; j <= 3; j++) {
      beta = 8 / (eta * rs[j] * 1e9)
      t = 2 * 9 * alpha + 2 * 511 / 512 * n * beta
      line = line sprintf("%s%s Gbit/s %.2f ms, batch %d", j > 1 ? "; " : "", rs[j], t * 1e3, ceil(9 * t / c[m]))
    }
    printf " %s: %s%s", m, line, i < nm ? "." : ".\n"
  }
}
