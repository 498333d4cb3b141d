#!/usr/bin/env python3
"""tcp_throughput.py recv|send ADDR [MIB]: one TCP stream of MIB MiB (default 64) from `send` to `recv`
(listening on ADDR:5201); each side prints its rate in Gbit/s. bench_network.sh uses it to see what a link
(a veth pair, shaped by tc tbf) carries without MPI."""
import socket
import sys
import time

mode, addr = sys.argv[1], sys.argv[2]
total = (int(sys.argv[3]) if len(sys.argv) > 3 else 64) << 20
if mode == "recv":
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, 5201))
    srv.listen(1)
    conn, _ = srv.accept()
    got, t0 = 0, None
    while got < total:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        t0 = t0 or time.time()
        got += len(chunk)
    conn.sendall(b"x")
    print("recv %.3f Gbit/s" % (got * 8 / (time.time() - t0) / 1e9))
else:
    conn = socket.create_connection((addr, 5201))
    buf = bytes(1 << 20)
    t0 = time.time()
    for _ in range(total >> 20):
        conn.sendall(buf)
    conn.recv(1)
    print("send %.3f Gbit/s" % (total * 8 / (time.time() - t0) / 1e9))
