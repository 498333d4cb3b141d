# fit.awk: fits an all-reduce curve of tests/tools/allreduce_bench (awk -v name=LINK -f fit.awk FILE).
# Uses the fastest repetition of each size (the least disturbed by other load on the machine): t = a + b*n by
# relative least squares over n >= 1 MiB (beyond the tbf bucket, where the link's rate shows), and the
# median time of the sizes up to 1 kB (the per-message latency). Prints
# "LINK small_us S a_us A beta_ns_per_byte B GBps G Gbit R".
/^#/ { next }
NF >= 3 {
  n = $1; t = $3 * 1e-6
  if (n <= 1024) small[++ns] = t
  if (n >= 1048576) { w = 1 / (t * t); S += w; Sx += w * n; Sy += w * t; Sxx += w * n * n; Sxy += w * n * t }
}
END {
  b = (S * Sxy - Sx * Sy) / (S * Sxx - Sx * Sx); a = (Sy - b * Sx) / S
  for (i = 2; i <= ns; i++)
    for (j = i; j > 1 && small[j - 1] > small[j]; j--) { x = small[j]; small[j] = small[j - 1]; small[j - 1] = x }
  t0 = small[int((ns + 1) / 2)]
  printf "%s small_us %.1f a_us %.1f beta_ns_per_byte %.4f GBps %.3f Gbit %.2f\n", name, t0 * 1e6, a * 1e6, b * 1e9, 1e-9 / b, 8e-9 / b
}
