#!/usr/bin/env bash
# test_lost_host.sh TRAINER MAKE_DATASET DATA_DIR: a training on two simulated hosts loses one of them, and
# the job ends instead of hanging: within 30 s, non-zero, with a message that says so; no process of the
# job is left on either host; the last checkpoint is whole and training resumes from it on the host that
# is left, with 1 rank. Ways to lose a host:
#  - its link is cut for good (`ip link set eth0 down` in its namespace): Open MPI's keepalive probes;
#  - all its processes are killed (the Open MPI daemon and the rank), or just the rank;
#  - its rank freezes (SIGSTOP) while the host stays up: only the trainer's watchdog can tell.
# Needs root. Prints "N passed, N failed"; exits non-zero when a check fails.
set -u
trainer=$1 make_dataset=$2 data=$3
. "$(dirname "$0")/lib.sh"
mn_begin 170 2
h1=${MN_HOST[0]} h2=${MN_HOST[1]}
export TRAINER_WATCHDOG_S=20

"$make_dataset" train.h5 768 12 4 1 >/dev/null || { bad "make_dataset"; mn_end; }
# steps_in CHECKPOINT: the optimizer steps it holds, as `trainer info` tells them (empty: unreadable).
steps_in() { "$trainer" info "$1" 2>/dev/null | grep -i 'trained' | grep -o '[0-9,]* steps' | head -1 | cut -d' ' -f1 | tr -d ,; }
pids_on() { ip netns pids "$1" | tr '\n' ' '; }

# start NAME: a long training on both hosts in the background, checkpoint every 20 steps; returns once
# a checkpoint exists.
start() {
  rm -f "$1.h5" "$1.rc"
  ( mn_mpirun 90 1 "$h1" "$h2" -- "$trainer" train --model "$data/small.model" --data train.h5 \
      --epochs 100000 --batch-size 16 --seed 5 --threads 1 --quiet --checkpoint-every 20 --checkpoint "$1.h5" \
      >"$1.log" 2>&1
    echo $? >"$1.rc" ) &
  for _ in $(seq 150); do [ -s "$1.h5" ] || [ -e "$1.rc" ] && break; sleep 0.1; done
  sleep 1
}
# ended NAME WHAT T0: the job ended within 30 s of T0, non-zero, with a message naming the loss.
ended() {
  local name=$1 what=$2 t0=$3 rc
  for _ in $(seq 300); do [ -s "$name.rc" ] && break; sleep 0.1; done
  if [ ! -s "$name.rc" ]; then bad "$what: the job still runs 30 s later"; return; fi
  rc=$(cat "$name.rc")
  local msg
  msg=$(grep -m1 -E 'lost communication with a remote daemon|waited [0-9]+ s for the other ranks|exited on signal|unexpectedly disconnected' "$name.log")
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ -n "$msg" ]; then
    ok "$what: the job ended after $(since "$t0") s, exit $rc: ${msg# }"
  else
    bad "$what: exit $rc after $(since "$t0") s: $(grep -v '^\[mpirun-nodes\]' "$name.log" | head -c 600)"
  fi
  # Nothing of the job stays behind, on the host that is left or (soon: its own keepalive or watchdog) on
  # the lost one.
  local left=""
  for _ in $(seq 250); do left="$(pids_on "$h1")$(pids_on "$h2")"; [ -z "${left// /}" ] && break; sleep 0.1; done
  [ -z "${left// /}" ] && ok "$what: no process left on either host" \
    || bad "$what: left running: $(for p in $left; do printf '%s %s ' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; done)"
}

# 1. The link is cut for good.
start cut
t0=$(now)
ip -n "$h2" link set eth0 down
ended cut "link of $h2 cut" "$t0"
steps=$(steps_in cut.h5)
[ -n "$steps" ] && [ "$steps" -gt 0 ] && ok "the last checkpoint is whole ($steps steps, trainer info reads it)" \
  || bad "checkpoint after the cut: $("$trainer" info cut.h5 2>&1 | tail -2)"
if on "$h1" "timeout -k 5 60 '$trainer' train --resume cut.h5 --data train.h5 --epochs 100000 --max-steps $((steps + 30)) \
     --threads 1 --quiet >resume.log 2>&1" && [ "$(steps_in cut.h5)" = $((steps + 30)) ] &&
   "$trainer" info cut.h5 | grep -qiE 'written by:? *1 rank'; then
  ok "resumed on $h1 alone, 1 rank: step $steps -> $((steps + 30))"
else
  bad "resume on $h1: $(tail -3 resume.log) / $("$trainer" info cut.h5 2>&1 | tail -1)"
fi
ip -n "$h2" link set eth0 up

# 2. The host's processes are killed: the Open MPI daemon and the rank; then just the rank.
for what in all rank; do
  start "kill-$what"
  t0=$(now)
  if [ $what = all ]; then
    victims=$(pids_on "$h2")
  else
    victims=$(for p in $(pids_on "$h2"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = trainer ] && echo "$p"; done)
  fi
  if [ -z "${victims// /}" ]; then bad "kill $what: nothing runs on $h2"; continue; fi
  # shellcheck disable=SC2086
  kill -KILL $victims
  ended "kill-$what" "$([ $what = all ] && echo "every process on $h2 killed" || echo "the rank on $h2 killed")" "$t0"
  [ -n "$(steps_in "kill-$what.h5")" ] && ok "kill $what: the last checkpoint is whole" \
    || bad "kill $what: checkpoint: $("$trainer" info "kill-$what.h5" 2>&1 | tail -1)"
done

# 3. The rank on the other host freezes; its host and daemon stay up, so MPI waits for ever: the watchdog.
start freeze
victim=$(for p in $(pids_on "$h2"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = trainer ] && echo "$p"; done)
t0=$(now)
kill -STOP $victim
ended freeze "the rank on $h2 frozen (watchdog ${TRAINER_WATCHDOG_S} s)" "$t0"
grep -q 'waited 20 s for the other ranks' freeze.log && ok "the watchdog said so" \
  || bad "no watchdog line: $(head -c 400 freeze.log)"
mn_end
