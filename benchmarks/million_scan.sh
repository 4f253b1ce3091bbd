#!/usr/bin/env bash
# The million-image default scan of BENCHMARKS.md ("A million images"), resumable: run it
# again after a kill and it continues into the same index; each run is one segment, timed
# by /usr/bin/time -v, with a heartbeat (pairs stored, RSS) every minute.
#
#   python benchmarks/scan_scale.py runs/scale1m --generate 1000000 --photos ../shared \
#       --layout distinct --copies 0.05 --generate-only          # once, about 80 min
#   nohup setsid bash benchmarks/million_scan.sh REV > runs/scale1m/m1m.log 2>&1 &
#
# REV (a commit) is checked out in the worktree runs/m1m-src, so edits to this checkout do
# not change the run; PYTHONPATH points at it, since the editable install would import
# this checkout instead. Pause with `kill -STOP -- -PGID` (and log it) to share the machine.
set -u
cd "$(dirname "$0")/.."
root=$PWD
rev=${1:?usage: million_scan.sh REV}
[ -d runs/m1m-src ] || git worktree add --detach runs/m1m-src "$rev"
# The next segment number no file uses yet (a killed segment leaves a log but no .time).
seg=1
while compgen -G "runs/scale1m/scan-seg$seg.*" > /dev/null; do seg=$((seg + 1)); done
# The scan and its decode workers share this script's process group (setsid above): the
# heartbeat sums their RSS only, not other Python work on the machine, and their PSS:
# forked workers share the scan's pages, which RSS counts once per process.
group=$(ps -o pgid= -p $$ | tr -d ' ')
( while sleep 60; do
    n=$(sqlite3 runs/scale1m/million.lookalike "select count(*) from verified" 2>/dev/null)
    rss=$(ps -o rss= -g "$group" | awk '{s+=$1} END {print s}')
    pss=$(for p in $(ps -o pid= -g "$group"); do
      awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null; done | awk '{s+=$1} END {print s}')
    echo "$(date +%FT%T) seg$seg verified=$n rss_kb=$rss pss_kb=$pss" >> runs/scale1m/heartbeat.log
  done ) &
beat=$!
cd runs/m1m-src
PYTHONPATH="$PWD/src" /usr/bin/time -v -o "$root/runs/scale1m/scan-seg$seg.time" \
  "$root/.venv/bin/python" benchmarks/scan_scale.py "$root/runs/scale1m" \
  --index "$root/runs/scale1m/million.lookalike" --peer phash-plain --no-report \
  --layout distinct --copies 0.05 --json-out "$root/runs/scale1m/scan_scale_1m-seg$seg.json" \
  > "$root/runs/scale1m/scan-seg$seg.log" 2>&1
kill "$beat"
