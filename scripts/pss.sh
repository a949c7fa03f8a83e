#!/bin/bash
# usage: scripts/pss.sh CMD...
# Runs CMD (stdout to pss.out, stderr to pss.err in the current directory) and prints the peak
# of the summed PSS over CMD and its children and grandchildren (a pool's zygote and workers),
# sampled from /proc/PID/smaps_rollup every 0.2 s. Linux only.
"$@" > pss.out 2> pss.err &
pid=$!
peak=0
while kill -0 "$pid" 2>/dev/null; do
  pids="$pid $(pgrep -P "$pid") $(for c in $(pgrep -P "$pid"); do pgrep -P "$c"; done)"
  sum=0
  for q in $pids; do
    v=$(awk '/^Pss:/{print $2}' "/proc/$q/smaps_rollup" 2>/dev/null)
    sum=$((sum + ${v:-0}))
  done
  [ "$sum" -gt "$peak" ] && peak=$sum
  sleep 0.2
done
wait "$pid"
echo "rc=$? peak_pss_mib=$((peak / 1024))"
