#!/usr/bin/env bash
# mpirun-nodes.sh HOSTFILE NET PROGRAM [ARGS...]: runs PROGRAM (the trainer) with Open MPI over TCP on
# the hosts of HOSTFILE, and makes sure that a lost host ends the job instead of hanging it.
#
#   jobs/multinode/mpirun-nodes.sh hosts 10.1.0.0/16 build/trainer/trainer train --model fashion-cnn ...
#
# HOSTFILE  Open MPI hostfile, one host per line: `node17 slots=1` (slots = ranks on that host). The number
#           of ranks is the sum of the slots, unless MPIRUN_ARGS says -np.
# NET       the network the ranks talk over: a subnet (10.1.0.0/16) or interface names (eth0,ib0), given
#           to btl_tcp_if_include and oob_tcp_if_include. Hosts with several interfaces (a management
#           network, docker0, a 1 Gbit and a 25 Gbit port) otherwise may pick one that does not route
#           between them, or the slow one.
# Environment:
#   TRAINER_WATCHDOG_S  seconds a rank may wait in a collective before it ends the job (default here 20;
#                       the trainer's own default is 60). Passed on to every rank.
#   TRAINER_BTL         Open MPI transports (default self,vader,tcp: shared memory between the ranks of a
#                       host, TCP between hosts; tcp,self forces TCP everywhere).
#   OMP_NUM_THREADS     passed on when set (the trainer's --threads wins over it).
#   MPIRUN_ARGS         more mpirun options, split on spaces (e.g. "-np 4 --map-by node").
#
# A host that is lost ends the job: Open MPI's daemons probe their TCP connections (keepalive after 5 s
# idle, every 2 s, 3 probes), so a dead host or a cut link is noticed in about 12 s (Open MPI's defaults,
# 300 s + 9 x 20 s, would keep the job waiting for minutes); a rank killed on a host is noticed within
# seconds; and a rank that waits longer than TRAINER_WATCHDOG_S in a collective prints one line and exits
# 4 (what MPI does not see: a frozen rank on a host that still answers). mpirun then stops every rank and
# exits non-zero (205: a daemon lost; 137: a rank killed; 4: the watchdog).
# The checkpoint (written atomically by rank 0) is whole: resume with `trainer train --resume` on the hosts
# that are left.
# The ranks share each host's cores (--bind-to none): with one rank per host, as usual here, the rank's
# oneDNN threads use all of them.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,4p' "$0" >&2; exit 2; }
hostfile=$1 net=$2
shift 2
[ -r "$hostfile" ] || { echo "mpirun-nodes: cannot read hostfile $hostfile" >&2; exit 2; }
export TRAINER_WATCHDOG_S=${TRAINER_WATCHDOG_S:-20}

cmd=(mpirun --hostfile "$hostfile"
     --mca btl "${TRAINER_BTL:-self,vader,tcp}"
     --mca btl_tcp_if_include "$net" --mca oob_tcp_if_include "$net"
     --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3
     --bind-to none -x TRAINER_WATCHDOG_S)
[ -n "${OMP_NUM_THREADS:-}" ] && cmd+=(-x OMP_NUM_THREADS)
# shellcheck disable=SC2206  # a list of options, split on spaces
[ -n "${MPIRUN_ARGS:-}" ] && cmd+=(${MPIRUN_ARGS})
echo "[mpirun-nodes] ${cmd[*]} $*" >&2
exec "${cmd[@]}" "$@"
