#!/usr/bin/env bash
# Starling load harness: SIPp against the real binary, one Starling per stage.
#
#   bash benches/load/run.sh [options] [stage...]        stages: register answer b2bua bridged relay srtp peers ami blf
#
# With no stage, all nine run in that order. Every stage starts its own Starling in its own
# temp dir on free ports of 127.0.0.1, drives it with SIPp (relay: starling-callgen) for DURATION seconds, measures
# Starling's CPU time (utime+stime from /proc/<pid>/stat) and memory (VmRSS, VmHWM), stops it
# and kills only the processes it started. A table of the figures is printed and appended,
# as a new dated section, to benches/RESULTS.md. See benches/load/README.md.
#
# Options (each also settable by the environment variable in brackets):
#   -d, --duration S      seconds of traffic per stage                          [DURATION=60]
#   --users N             register: number of [uNNNN] peers                     [USERS=5000]
#   --reg-rate R          register: registrations started per second            [REG_RATE=500]
#   --answer-rate R       answer: calls started per second                      [ANSWER_RATE=1000]
#   --b2bua-rate R        b2bua: calls started per second                       [B2BUA_RATE=200]
#   --concurrent N        bridged: target number of simultaneous calls          [CONCURRENT=600]
#   --ramp S              bridged, relay: seconds to reach the target (= call length) [RAMP=DURATION/3]
#   --relay-concurrent N  relay: simultaneous calls from starling-callgen       [RELAY_CONCURRENT=1800]
#   --srtp-calls "N M"    srtp: the concurrent calls of each comparison         [SRTP_CALLS="300 600"]
#   --srtp-pairs N        srtp: plain/SRTP pairs of runs at each                [SRTP_PAIRS=2]
#   --lines N             peers: number of register => lines                    [LINES=10000]
#   --peers N             peers: number of qualified peers                      [PEERS=10000]
#   --peers-duration S    peers: seconds the lines and peers are held           [PEERS_DURATION=DURATION]
#   --ami-rate R          ami: calls/s answered while the sessions listen        [AMI_RATE=200]
#   --ami-sessions N      ami: manager sessions reading every event             [AMI_SESSIONS=50]
#   --blf-subs N          blf: dialog subscriptions held                        [BLF_SUBS=2000]
#   --blf-hints N         blf: hints they watch (BLF_SUBS / BLF_HINTS keys each) [BLF_HINTS=200]
#   --blf-refresh S       blf: seconds between a subscription's refreshes       [BLF_REFRESH=60]
#   --blf-rate R          blf: subscriptions started per second                 [BLF_RATE=100]
#   --cdr                 every stage also loads cdr_csv and cdr_sqlite3        [CDR=1]
#   --no-results          do not touch benches/RESULTS.md                       [NO_RESULTS=1]
#   --keep                keep the temp dirs (configs, SIPp logs, server logs)  [KEEP=1]
#   -h, --help
# More: REG_LIMIT, ANSWER_LIMIT, B2BUA_LIMIT (outstanding calls, SIPp -l), B2BUA_HOLD_MS,
# PEERS_POLL (peers: seconds between polls of sip show registry/peers until all are up, 3),
# STARLING (the binary; default target/release/starling), CALLGEN (the relay stage's generator;
# default target/release/starling-callgen), VERBOSE (Starling's verbose, 0),
# RESULTS (the results file), RESULTS_NOTE (a line added to the results section), DEBUG=1.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TOOLS=$HERE/tools
SCENARIOS=$HERE/scenarios
COMMAND_LINE="bash benches/load/run.sh${*:+ $*}"

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

STAGES=()
while [ $# -gt 0 ]; do
    case "$1" in
        -d|--duration) DURATION=$2; shift ;;
        --duration=*) DURATION=${1#*=} ;;
        --users) USERS=$2; shift ;;
        --reg-rate) REG_RATE=$2; shift ;;
        --answer-rate) ANSWER_RATE=$2; shift ;;
        --b2bua-rate) B2BUA_RATE=$2; shift ;;
        --concurrent) CONCURRENT=$2; shift ;;
        --ramp) RAMP=$2; shift ;;
        --relay-concurrent) RELAY_CONCURRENT=$2; shift ;;
        --srtp-calls) SRTP_CALLS=$2; shift ;;
        --srtp-pairs) SRTP_PAIRS=$2; shift ;;
        --lines) LINES=$2; shift ;;
        --peers) PEERS=$2; shift ;;
        --peers-duration) PEERS_DURATION=$2; shift ;;
        --ami-rate) AMI_RATE=$2; shift ;;
        --ami-sessions) AMI_SESSIONS=$2; shift ;;
        --blf-subs) BLF_SUBS=$2; shift ;;
        --blf-hints) BLF_HINTS=$2; shift ;;
        --blf-refresh) BLF_REFRESH=$2; shift ;;
        --blf-rate) BLF_RATE=$2; shift ;;
        --cdr) CDR=1 ;;
        --no-results) NO_RESULTS=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        register|answer|b2bua|bridged|relay|srtp|peers|ami|blf) STAGES+=("$1") ;;
        *) echo "run.sh: unknown argument '$1' (stages: register answer b2bua bridged relay srtp peers ami blf; -h for help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#STAGES[@]} -eq 0 ] && STAGES=(register answer b2bua bridged relay srtp peers ami blf)

DURATION=${DURATION:-60}
USERS=${USERS:-5000}
REG_RATE=${REG_RATE:-500}
REG_LIMIT=${REG_LIMIT:-$((REG_RATE * 2))}
ANSWER_RATE=${ANSWER_RATE:-1000}
ANSWER_LIMIT=${ANSWER_LIMIT:-$((ANSWER_RATE * 4))}
B2BUA_RATE=${B2BUA_RATE:-200}
B2BUA_HOLD_MS=${B2BUA_HOLD_MS:-1000}
B2BUA_LIMIT=${B2BUA_LIMIT:-$((B2BUA_RATE * 4 + 50))}
CONCURRENT=${CONCURRENT:-600}
RELAY_CONCURRENT=${RELAY_CONCURRENT:-1800}
RAMP=${RAMP:-$((DURATION / 3))}
SRTP_CALLS=${SRTP_CALLS:-300 600}
SRTP_PAIRS=${SRTP_PAIRS:-2}
SRTP_ENV=""
LINES=${LINES:-10000}
PEERS=${PEERS:-10000}
PEERS_DURATION=${PEERS_DURATION:-$DURATION}
PEERS_POLL=${PEERS_POLL:-3}
AMI_RATE=${AMI_RATE:-200}
AMI_SESSIONS=${AMI_SESSIONS:-50}
BLF_SUBS=${BLF_SUBS:-2000}
BLF_HINTS=${BLF_HINTS:-200}
BLF_REFRESH=${BLF_REFRESH:-60}
BLF_RATE=${BLF_RATE:-100}
CDR=${CDR:-0}
VERBOSE=${VERBOSE:-0}
KEEP=${KEEP:-0}
NO_RESULTS=${NO_RESULTS:-0}
STARLING=${STARLING:-$ROOT/target/release/starling}
CALLGEN=${CALLGEN:-$ROOT/target/release/starling-callgen}
MODDIR=${MODDIR:-$(dirname "$STARLING")}
RESULTS=${RESULTS:-$ROOT/benches/RESULTS.md}

for n in SRTP_PAIRS AMI_RATE AMI_SESSIONS BLF_SUBS BLF_HINTS BLF_REFRESH BLF_RATE DURATION USERS REG_RATE REG_LIMIT ANSWER_RATE ANSWER_LIMIT B2BUA_RATE B2BUA_HOLD_MS B2BUA_LIMIT CONCURRENT RELAY_CONCURRENT RAMP LINES PEERS PEERS_DURATION PEERS_POLL; do
    if ! [[ ${!n} =~ ^[0-9]+$ ]] || [ "${!n}" -lt 1 ]; then
        echo "run.sh: $n must be a positive integer (got '${!n}')" >&2
        exit 2
    fi
done
for n in $SRTP_CALLS; do
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || { echo "run.sh: SRTP_CALLS must be positive integers (got '$SRTP_CALLS')" >&2; exit 2; }
done
[ "$RAMP" -ge "$DURATION" ] && RAMP=$((DURATION > 2 ? DURATION / 2 : 1))
[ "$LINES" -gt 99999 ] || [ "$PEERS" -gt 99999 ] && { echo "run.sh: LINES and PEERS go up to 99999" >&2; exit 2; }
for tool in sipp python3 timeout getconf; do
    command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is missing (SIPp: apt-get install sip-tester)" >&2; exit 2; }
done
if [ ! -x "$STARLING" ]; then
    echo "run.sh: no binary at $STARLING: run 'cargo build --release' first" >&2
    exit 2
fi

CLK_TCK=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || true
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stl-load.XXXXXX")
ROWS=$WORK/rows.tsv
: >"$ROWS"

# ---------------------------------------------------------------------------------------
# Process bookkeeping: every background process we start is listed here and killed by pid.
# ---------------------------------------------------------------------------------------
BG_PIDS=()          # `timeout` wrappers and helpers we started
STARLING_TPID=""    # the `timeout` that runs the current Starling
STARLING_PID=""     # Starling itself (the child of that timeout)
STARLING_VERSION="" # what `core show version` said
CONF=""             # the current Starling's starling.conf

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

child_of() { # the first child pid of $1 (a `timeout` runs exactly one)
    local c
    c=$(cat "/proc/$1/task/$1/children" 2>/dev/null) || return 1
    c=${c%% *}
    [ -n "$c" ] && echo "$c"
}

kill_tree() { # kill a `timeout` wrapper and the program it runs, by pid, gently then hard
    local tpid=$1 child
    [ -n "$tpid" ] || return 0
    kill -0 "$tpid" 2>/dev/null || return 0
    child=$(child_of "$tpid")
    kill -TERM "$tpid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.2
    done
    [ -n "$child" ] && kill -KILL "$child" 2>/dev/null
    kill -KILL "$tpid" 2>/dev/null
    wait "$tpid" 2>/dev/null
    return 0
}

forget() { # drop a pid from BG_PIDS
    local keep=() p
    for p in "${BG_PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
    BG_PIDS=("${keep[@]}")
}

rx() { # one CLI command against the current Starling, bounded
    timeout -k 2 15 "$STARLING" -C "$CONF" -rx "$1" 2>/dev/null
}

stop_starling() {
    [ -n "$STARLING_TPID" ] || return 0
    if kill -0 "$STARLING_TPID" 2>/dev/null; then
        rx "core stop now" >/dev/null
        for _ in $(seq 1 25); do
            kill -0 "$STARLING_TPID" 2>/dev/null || break
            sleep 0.2
        done
        kill_tree "$STARLING_TPID"
    fi
    wait "$STARLING_TPID" 2>/dev/null
    forget "$STARLING_TPID"
    STARLING_TPID=""
    STARLING_PID=""
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local p
    for p in "${BG_PIDS[@]}"; do
        [ "$p" = "$STARLING_TPID" ] && continue
        kill_tree "$p"
    done
    stop_starling
    if [ "$KEEP" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------
cpu_ticks() { # utime + stime of a pid, in clock ticks (fields 14 and 15 of /proc/pid/stat)
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }   # drop "pid (comm) ": field 3 (state) is now the first
    # shellcheck disable=SC2086
    set -- $s
    echo $(( ${12} + ${13} ))
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6 }' /proc/stat; }
children_cpu() { # user+sys seconds of this shell's reaped children (SIPp, sinks, -rx)
    # `times` must run in this shell (a $(...) subshell has no reaped children of its own).
    times >"$WORK/times"
    awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] } print n }' "$WORK/times"
}
nap() { # an interruptible sleep (a trapped signal ends `wait` at once)
    sleep "$1" &
    wait $!
}
now() { date +%s.%N; }
calc() { python3 -c "import sys; print($1)"; }
mb() { calc "f'{$1 / 1024:.1f}'"; }

free_ports() { # COUNT blocks of 8 free UDP ports (base even), one a line: base = SIP, base+2.. = media
    python3 "$TOOLS/ports.py" "$1" 8
}

# ---------------------------------------------------------------------------------------
# Starling
# ---------------------------------------------------------------------------------------
write_base_conf() { # DIR: starling.conf, modules.conf, rtp.conf
    local dir=$1 extra=""
    mkdir -p "$dir/etc"
    cat >"$dir/etc/starling.conf" <<EOF
[directories]
moddir => $MODDIR
rundir => ../run
logdir => ../log
dbdir => ../db
soundsdir => /usr/share/asterisk/sounds

[options]
verbose = $VERBOSE
EOF
    # Only what the stages need. Dial() will come with its own module (Asterisk's app_dial):
    # load it when it is there; the Dial stages check for the application itself.
    [ -e "$MODDIR/libapp_dial.so" ] && extra="load => app_dial.so"
    # With --cdr every call also leaves its record in both CDR backends.
    [ "$CDR" = 1 ] && extra="$extra"$'\n''load => cdr_csv.so'$'\n''load => cdr_sqlite3.so'
    printf '[modules]\nautoload = no\nload => pbx_config.so\nload => chan_sip.so\n%s\n' "$extra" >"$dir/etc/modules.conf"
    printf '[general]\nrtpstart = 10000\nrtpend = 20000\n' >"$dir/etc/rtp.conf"
}

start_starling() { # DIR [MODULES]: starts Starling and waits until its control socket answers
    local dir=$1 modules=${2:-chan_sip.so pbx_config.so} out module longest=$DURATION
    CONF=$dir/etc/starling.conf
    [ "$PEERS_DURATION" -gt "$longest" ] && longest=$PEERS_DURATION
    # `timeout` bounds its life even if this script dies without running its trap.
    timeout -k 5 $((longest * 3 + 300)) "$STARLING" -C "$CONF" -f >"$dir/server.log" 2>&1 &
    STARLING_TPID=$!
    BG_PIDS+=("$STARLING_TPID")
    for _ in $(seq 1 150); do
        if ! kill -0 "$STARLING_TPID" 2>/dev/null; then
            log "Starling exited at start; log tail:"
            tail -20 "$dir/server.log" >&2
            return 1
        fi
        [ -z "$STARLING_PID" ] && STARLING_PID=$(child_of "$STARLING_TPID")
        out=$(rx "core show version")
        if [ -n "$STARLING_PID" ] && [[ $out == Starling* ]]; then
            STARLING_VERSION=${out%%$'\n'*}
            # A module refused at load (say, built against another core while cargo is at
            # work) would leave a server that answers nothing: say so instead of measuring it.
            out=$(rx "module show")
            for module in $modules; do
                if [[ $out != *"$module"* ]]; then
                    log "Starling runs without $module (module show: ${out##*$'\n'}); log tail:"
                    tail -20 "$dir/server.log" >&2
                    return 1
                fi
            done
            return 0
        fi
        sleep 0.2
    done
    log "Starling did not answer on its control socket within 30 s; log tail:"
    tail -20 "$dir/server.log" >&2
    return 1
}

have_dial() {
    local out
    out=$(rx "core show application Dial")
    [[ $out == *"Info about application 'Dial'"* ]] && return 0
    rx "core show applications" | grep -qE '^[[:space:]]*Dial:' && return 0
    return 1
}

start_dial_starling() { # DIR STAGE TARGET_TEXT: starts Starling for a Dial stage; on failure writes the row, returns 1
    local dir=$1 stage=$2 target=$3
    start_starling "$dir" || { skip_row "$stage" "$target" "failed: Starling did not start (see the log above)"; return 1; }
    if ! have_dial; then
        stop_starling
        skip_row "$stage" "$target" "skipped: Dial is not available"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------
# SIPp
# ---------------------------------------------------------------------------------------
SIPP_TPID=""
sipp_start() { # NAME WORKDIR BOUND_SECONDS sipp-args...: SIPp in the background, bounded
    local name=$1 dir=$2 bound=$3
    shift 3
    (cd "$dir" && exec timeout -k 5 "$bound" sipp "$@" -nostdin -trace_stat -stf "$name.csv" -fd 1 \
        -trace_screen -screen_file "$name.screen" -trace_err -error_file "$name.err" -max_log_size 2000000 \
        >"$name.out" 2>&1) &
    SIPP_TPID=$!
    BG_PIDS+=("$SIPP_TPID")
}

sipp_wait() { # TPID: waits for a SIPp started by sipp_start; returns its exit code
    local rc
    wait "$1"
    rc=$?
    forget "$1"
    return $rc
}

sipp_soft_stop() { # TPID GRACE: let a uas finish (it exits by itself after -m calls), else ask it to
    local tpid=$1 grace=$2 child
    for _ in $(seq 1 $((grace * 5))); do
        kill -0 "$tpid" 2>/dev/null || { sipp_wait "$tpid"; return; }
        sleep 0.2
    done
    child=$(child_of "$tpid")
    [ -n "$child" ] && kill -USR1 "$child" 2>/dev/null   # SIPp's soft exit: dumps its stats
    for _ in $(seq 1 25); do
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.2
    done
    kill_tree "$tpid"
    sipp_wait "$tpid"
}

sipp_report() { # NAME DIR: SIPp's own complaint when it made no stats, the error tail when calls failed
    local name=$1 dir=$2
    if [ ! -s "$dir/$name.csv" ]; then
        log "$name: SIPp wrote no statistics; its output ($dir/$name.out):"
        tail -5 "$dir/$name.out" | sed 's/^/    /' >&2
    fi
    if [ -s "$dir/$name.err" ]; then
        log "$name: first SIPp errors ($dir/$name.err):"
        grep -v '^The following events occurred' "$dir/$name.err" | head -c 800 | sed 's/^/    /' >&2
        echo >&2
    fi
}

# ---------------------------------------------------------------------------------------
# One stage's measurement window
# ---------------------------------------------------------------------------------------
measure_begin() {
    M_T0=$(now)
    M_CPU0=$(cpu_ticks "$STARLING_PID")
    M_RSS0=$(status_kb "$STARLING_PID" VmRSS)
    read -r M_MT0 M_MI0 < <(machine_ticks)
    children_cpu >"$WORK/gen0"
    M_GEN0=$(cat "$WORK/gen0")
}

measure_end() { # sets CPU_S CPU_PCT RSS_TXT WALL MACHINE_PCT GEN_CPU
    local t1 cpu1 rss1 hwm mt1 mi1 gen1
    t1=$(now)
    cpu1=$(cpu_ticks "$STARLING_PID")
    rss1=$(status_kb "$STARLING_PID" VmRSS)
    hwm=$(status_kb "$STARLING_PID" VmHWM)
    read -r mt1 mi1 < <(machine_ticks)
    children_cpu >"$WORK/gen1"
    gen1=$(cat "$WORK/gen1")
    WALL=$(calc "f'{$t1 - $M_T0:.1f}'")
    CPU_S=$(calc "f'{($cpu1 - $M_CPU0) / $CLK_TCK:.2f}'")
    CPU_PCT=$(calc "f'{($cpu1 - $M_CPU0) / $CLK_TCK / max($t1 - $M_T0, 1e-9) * 100:.0f}'")
    MACHINE_PCT=$(calc "f'{(1 - ($mi1 - $M_MI0) / max($mt1 - $M_MT0, 1)) * 100:.0f}'")
    GEN_CPU=$(calc "f'{$gen1 - $M_GEN0:.1f}'")
    [ -n "${DEBUG:-}" ] && log "debug: cpu $M_CPU0 -> $cpu1, machine $M_MT0/$M_MI0 -> $mt1/$mi1, gen $M_GEN0 -> $gen1, t $M_T0 -> $t1"
    RSS_TXT="$(mb "$M_RSS0") / $(mb "$hwm") / $(mb "$rss1")"
}

common_notes() { # the notes every stage ends with
    [ "$CDR" = 1 ] && printf 'CDRs to cdr_csv + cdr_sqlite3; '
    echo "load generators (${GEN_NAMES:-SIPp, sinks}) CPU ${GEN_CPU} s; whole machine ${MACHINE_PCT}% busy (all processes, all CPUs); ${GEN_NAMES:-SIPp} ran ${elapsed} s"
}

per_call() { # CPU seconds per successful call, in ms
    if [ "$1" -gt 0 ]; then calc "f'{$CPU_S * 1000 / $1:.3f} ms'"; else echo "-"; fi
}

# stage target achieved ok failed cpu_s cpu_per_call cpu_pct rss rtp_loss notes
row() { local IFS=$'\t'; echo "$*" >>"$ROWS"; }

skip_row() { row "$1" "$2" "-" "-" "-" "-" "-" "-" "-" "-" "$3"; log "$1: $3"; }

uas_summary() { # "ok=N failed=M ..." from sippstat.py -> "N ok, M failed"
    local ok failed
    eval "$(echo "$1" | grep -o 'ok=[0-9]* failed=[0-9]*')"
    echo "$ok ok, $failed failed"
}

sink_summary() { # a rtpsink.py result file -> "N packets in M streams, K lost by sequence"
    local packets=0 streams=0 seq_lost=0 seq_expected=0 bytes=0
    [ -s "$1" ] && eval "$(cat "$1")"
    echo "$packets packets in $streams streams, $seq_lost missing by sequence number"
}

nap_until() { # sleep until the epoch time $1 (no-op when past)
    local d
    d=$(calc "max(0.0, $1 - $(now))")
    nap "$d"
}

stage_dir() { mkdir -p "$WORK/$1" && echo "$WORK/$1"; }

sip_general() { # PORT
    cat <<EOF
[general]
bindaddr = 127.0.0.1
bindport = $1
context = load
allowguest = yes
alwaysauthreject = yes
nat = force_rport
disallow = all
allow = ulaw
defaultexpiry = 3600
maxexpiry = 7200
rtptimeout = 0
useragent = Starling load
EOF
}

# ---------------------------------------------------------------------------------------
# (a) register: a registration storm of USERS peers with digest
# ---------------------------------------------------------------------------------------
stage_register() {
    local dir ports sport uport m rate tps online forbidden
    dir=$(stage_dir register)
    mapfile -t ports < <(free_ports 2)
    sport=${ports[0]} uport=${ports[1]}
    write_base_conf "$dir"
    {
        sip_general "$sport"
        python3 - "$USERS" <<'EOF'
import sys
for n in range(1, int(sys.argv[1]) + 1):
    print(f"\n[u{n:04d}]\ntype=friend\nhost=dynamic\nsecret=pw{n:04d}x\ncontext=load")
EOF
    } >"$dir/etc/sip.conf"
    printf '[load]\nexten => _X.,1,Answer()\n same => n,Hangup()\n' >"$dir/etc/extensions.conf"
    python3 - "$USERS" >"$dir/users.csv" <<'EOF'
import sys
print("SEQUENTIAL")
for n in range(1, int(sys.argv[1]) + 1):
    print(f"u{n:04d};pw{n:04d}x")
EOF
    cp "$SCENARIOS/register_uac.xml" "$dir/"
    log "register: $USERS peers, $REG_RATE registrations/s for ${DURATION}s (Starling on 127.0.0.1:$sport)"
    start_starling "$dir" || { skip_row register "$REG_RATE reg/s" "failed: Starling did not start (see the log above)"; return; }
    m=$((REG_RATE * DURATION))
    measure_begin
    sipp_start register "$dir" $((DURATION + 60)) "127.0.0.1:$sport" -sf register_uac.xml -inf users.csv \
        -i 127.0.0.1 -p "$uport" -mp $((uport + 2)) -r "$REG_RATE" -l "$REG_LIMIT" -m "$m" \
        -timeout "$((DURATION + 45))s" -timeout_error -recv_timeout 10000 -default_behaviors all,-bye
    sipp_wait "$SIPP_TPID"
    measure_end
    eval "$(python3 "$TOOLS/sippstat.py" "$dir/register.csv")"
    online=$(rx "sip show peers" | tail -1 | sed -n 's/.*Unmonitored: \([0-9]*\) online.*/\1/p')
    stop_starling
    rate=$(calc "f'{$rate:.0f}'")
    tps=$(calc "f'{2 * $rate:.0f}'")
    forbidden=$(grep -c "received 'SIP/2.0 403" "$dir/register.err" 2>/dev/null)
    { [ "$failed" -gt 0 ] || [ "$ok_stat" = 0 ]; } && sipp_report register "$dir"
    row register "$REG_RATE reg/s ($USERS users, l=$REG_LIMIT)" "$rate reg/s = $tps REGISTER tx/s" "$ok" "$failed" \
        "$CPU_S" "$(per_call "$ok")" "$CPU_PCT" "$RSS_TXT" "-" \
        "peers online after: ${online:-?}/$USERS; 403 answers to correct credentials (counted in SIPp's error log, capped at 2 MB): ${forbidden:-0}; retrans $retrans; $(common_notes)"
    log "register: $ok ok, $failed failed, $rate reg/s ($tps REGISTER transactions/s), Starling CPU ${CPU_S}s (${CPU_PCT}%), RSS $RSS_TXT MB"
}

# ---------------------------------------------------------------------------------------
# (b) answer: Answer(), Wait(1), Hangup() at ANSWER_RATE calls/s
# ---------------------------------------------------------------------------------------
stage_answer() {
    local dir ports sport uport m rate after
    dir=$(stage_dir answer)
    mapfile -t ports < <(free_ports 2)
    sport=${ports[0]} uport=${ports[1]}
    write_base_conf "$dir"
    sip_general "$sport" >"$dir/etc/sip.conf"
    printf '[load]\nexten => _X.,1,Answer()\n same => n,Wait(1)\n same => n,Hangup()\n' >"$dir/etc/extensions.conf"
    cp "$SCENARIOS/answer_uac.xml" "$dir/"
    log "answer: $ANSWER_RATE calls/s (limit $ANSWER_LIMIT) for ${DURATION}s (Starling on 127.0.0.1:$sport)"
    start_starling "$dir" || { skip_row answer "$ANSWER_RATE calls/s" "failed: Starling did not start (see the log above)"; return; }
    m=$((ANSWER_RATE * DURATION))
    measure_begin
    sipp_start answer "$dir" $((DURATION + 60)) "127.0.0.1:$sport" -sf answer_uac.xml -s 1000 \
        -i 127.0.0.1 -p "$uport" -mp $((uport + 2)) -r "$ANSWER_RATE" -l "$ANSWER_LIMIT" -m "$m" \
        -timeout "$((DURATION + 45))s" -timeout_error -recv_timeout 10000 -max_socket 4096
    sipp_wait "$SIPP_TPID"
    measure_end
    eval "$(python3 "$TOOLS/sippstat.py" "$dir/answer.csv")"
    after=$(rx "core show channels" | grep -E 'active calls|calls processed' | tr '\n' ' ')
    stop_starling
    rate=$(calc "f'{$rate:.0f}'")
    { [ "$failed" -gt 0 ] || [ "$ok_stat" = 0 ]; } && sipp_report answer "$dir"
    row answer "$ANSWER_RATE calls/s (l=$ANSWER_LIMIT)" "$rate calls/s" "$ok" "$failed" \
        "$CPU_S" "$(per_call "$ok")" "$CPU_PCT" "$RSS_TXT" "-" \
        "peak $peak concurrent; after: ${after% }; retrans $retrans; $(common_notes)"
    log "answer: $ok ok, $failed failed, $rate calls/s, Starling CPU ${CPU_S}s (${CPU_PCT}%), RSS $RSS_TXT MB"
}

dial_conf() { # DIR SPORT ASPORT: sip.conf with the [uas] peer, and Dial(SIP/uas)
    local dir=$1 sport=$2 asport=$3
    {
        sip_general "$sport"
        cat <<EOF

[uas]
type = peer
host = 127.0.0.1
port = $asport
insecure = port,invite
context = load
disallow = all
allow = ulaw
EOF
    } >"$dir/etc/sip.conf"
    printf '[load]\nexten => _X.,1,Dial(SIP/uas)\n same => n,Hangup()\n' >"$dir/etc/extensions.conf"
}

# ---------------------------------------------------------------------------------------
# (c) b2bua: SIPp uac -> Starling Dial(SIP/uas) -> SIPp uas
# ---------------------------------------------------------------------------------------
stage_b2bua() {
    local dir ports sport uport aport m rate uas_tpid uas_stats hold_s
    dir=$(stage_dir b2bua)
    mapfile -t ports < <(free_ports 3)
    sport=${ports[0]} uport=${ports[1]} aport=${ports[2]}
    write_base_conf "$dir"
    dial_conf "$dir" "$sport" "$aport"
    cp "$SCENARIOS/b2bua_uac.xml" "$SCENARIOS/b2bua_uas.xml" "$dir/"
    log "b2bua: $B2BUA_RATE calls/s of ${B2BUA_HOLD_MS} ms through Dial(SIP/uas) for ${DURATION}s (Starling on 127.0.0.1:$sport)"
    start_dial_starling "$dir" b2bua "$B2BUA_RATE calls/s" || return
    m=$((B2BUA_RATE * DURATION))
    hold_s=$(( (B2BUA_HOLD_MS + 999) / 1000 ))
    sipp_start b2bua_uas "$dir" $((DURATION + hold_s + 75)) -sf b2bua_uas.xml -i 127.0.0.1 -p "$aport" \
        -mp $((aport + 2)) -m "$m" -timeout "$((DURATION + hold_s + 60))s" -recv_timeout $(((hold_s + 15) * 1000)) -max_socket 4096
    uas_tpid=$SIPP_TPID
    sleep 0.5
    measure_begin
    sipp_start b2bua_uac "$dir" $((DURATION + hold_s + 60)) "127.0.0.1:$sport" -sf b2bua_uac.xml -s 2000 \
        -i 127.0.0.1 -p "$uport" -mp $((uport + 2)) -r "$B2BUA_RATE" -l "$B2BUA_LIMIT" -m "$m" -d "$B2BUA_HOLD_MS" \
        -timeout "$((DURATION + hold_s + 45))s" -timeout_error -recv_timeout $(((hold_s + 10) * 1000)) -max_socket 4096
    sipp_wait "$SIPP_TPID"
    measure_end
    sipp_soft_stop "$uas_tpid" 5
    uas_stats=$(python3 "$TOOLS/sippstat.py" "$dir/b2bua_uas.csv")
    eval "$(python3 "$TOOLS/sippstat.py" "$dir/b2bua_uac.csv")"
    stop_starling
    rate=$(calc "f'{$rate:.0f}'")
    { [ "$failed" -gt 0 ] || [ "$ok_stat" = 0 ]; } && { sipp_report b2bua_uac "$dir"; sipp_report b2bua_uas "$dir"; }
    row b2bua "$B2BUA_RATE calls/s, ${B2BUA_HOLD_MS} ms (l=$B2BUA_LIMIT)" "$rate calls/s" "$ok" "$failed" \
        "$CPU_S" "$(per_call "$ok")" "$CPU_PCT" "$RSS_TXT" "-" \
        "uas: $(uas_summary "$uas_stats"); peak $peak concurrent; retrans $retrans; $(common_notes)"
    log "b2bua: $ok ok, $failed failed, $rate calls/s, Starling CPU ${CPU_S}s (${CPU_PCT}%), RSS $RSS_TXT MB"
}

# ---------------------------------------------------------------------------------------
# (d) bridged: CONCURRENT simultaneous bridged PCMU calls with RTP both ways
# ---------------------------------------------------------------------------------------
stage_bridged() {
    local dir ports sport uport aport sink_a sink_b m hold_ms pcap_s pkts uas_tpid sa sb mid_calls
    local rate_txt a b loss_ab loss_ba loss_txt uas_stats sink_bound plateau_txt p_t0 p_c0 p_c1
    dir=$(stage_dir bridged)
    mapfile -t ports < <(free_ports 4)
    sport=${ports[0]} uport=${ports[1]} aport=${ports[2]} sink_a=${ports[3]} sink_b=$((ports[3] + 2))
    write_base_conf "$dir"
    dial_conf "$dir" "$sport" "$aport"
    cp "$SCENARIOS/bridged_uac.xml" "$SCENARIOS/bridged_uas.xml" "$dir/"
    # Each call lasts RAMP seconds and calls start at CONCURRENT per RAMP seconds: the number
    # of calls up climbs to CONCURRENT at t = RAMP and stays there until the last calls start.
    hold_ms=$((RAMP * 1000))
    pcap_s=$(calc "max(1.0, $RAMP - 1.0)")
    pkts=$(python3 "$TOOLS/mkpcap.py" "$dir/pcmu.pcap" "$pcap_s")
    m=$(( CONCURRENT * (DURATION - RAMP) / RAMP ))
    [ "$m" -lt "$CONCURRENT" ] && m=$CONCURRENT
    rate_txt="$CONCURRENT concurrent (ramp ${RAMP}s, ${RAMP}s calls, $m calls)"
    log "bridged: $rate_txt, PCMU both ways (${pkts} packets a side a call), Starling on 127.0.0.1:$sport"
    start_dial_starling "$dir" bridged "$rate_txt" || return
    sink_bound=$((DURATION + RAMP + 90))
    python3 "$TOOLS/rtpsink.py" "$sink_a" "$dir/sink_uac.txt" "$sink_bound" &
    sa=$!
    BG_PIDS+=("$sa")
    python3 "$TOOLS/rtpsink.py" "$sink_b" "$dir/sink_uas.txt" "$sink_bound" &
    sb=$!
    BG_PIDS+=("$sb")
    sipp_start bridged_uas "$dir" $((DURATION + RAMP + 75)) -sf bridged_uas.xml -i 127.0.0.1 -p "$aport" \
        -mp $((aport + 2)) -m "$m" -key sink_port "$sink_b" -timeout "$((DURATION + RAMP + 60))s" \
        -recv_timeout $(((RAMP + 20) * 1000)) -max_socket 4096
    uas_tpid=$SIPP_TPID
    sleep 0.5
    measure_begin
    sipp_start bridged_uac "$dir" $((DURATION + RAMP + 60)) "127.0.0.1:$sport" -sf bridged_uac.xml -s 3000 \
        -i 127.0.0.1 -p "$uport" -mp $((uport + 2)) -key sink_port "$sink_a" \
        -r "$CONCURRENT" -rp $((RAMP * 1000)) -l "$CONCURRENT" -m "$m" -d "$hold_ms" \
        -timeout "$((DURATION + RAMP + 45))s" -timeout_error -recv_timeout $(((RAMP + 15) * 1000)) -max_socket 4096
    # The plateau (CONCURRENT calls up) runs from t = RAMP to t = DURATION - RAMP: Starling's
    # CPU over it, and in its middle how many calls Starling says it holds.
    plateau_txt="no plateau (RAMP >= DURATION/2)"
    if [ $((DURATION - RAMP)) -gt $((RAMP + 2)) ]; then
        nap_until "$(calc "$M_T0 + $RAMP + 1")"
        p_t0=$(now) p_c0=$(cpu_ticks "$STARLING_PID")
        nap_until "$(calc "$M_T0 + $DURATION / 2")"
        mid_calls=$(rx "core show channels" | sed -n 's/^\([0-9]*\) active calls\{0,1\}.*/\1/p' | head -1)
        nap_until "$(calc "$M_T0 + $DURATION - $RAMP")"
        p_c1=$(cpu_ticks "$STARLING_PID")
        plateau_txt="Starling CPU on the plateau $(calc "f'{($p_c1 - $p_c0) / $CLK_TCK / max($(now) - $p_t0, 1e-9) * 100:.0f}'")%"
    else
        nap $((DURATION / 2))
        mid_calls=$(rx "core show channels" | sed -n 's/^\([0-9]*\) active calls\{0,1\}.*/\1/p' | head -1)
    fi
    sipp_wait "$SIPP_TPID"
    measure_end
    sipp_soft_stop "$uas_tpid" 5
    sleep 1
    kill -TERM "$sa" "$sb" 2>/dev/null
    wait "$sa" "$sb" 2>/dev/null
    forget "$sa"
    forget "$sb"
    uas_stats=$(python3 "$TOOLS/sippstat.py" "$dir/bridged_uas.csv")
    eval "$(python3 "$TOOLS/sippstat.py" "$dir/bridged_uac.csv")"
    stop_starling
    # Sent per direction: the pcap's packets for every call that completed.
    a=$(sed -n 's/.*packets=\([0-9]*\).*/\1/p' "$dir/sink_uac.txt" 2>/dev/null)
    b=$(sed -n 's/.*packets=\([0-9]*\).*/\1/p' "$dir/sink_uas.txt" 2>/dev/null)
    a=${a:-0} b=${b:-0}
    if [ "$ok" -gt 0 ]; then
        loss_ab=$(calc "f'{(1 - $b / ($pkts * $ok)) * 100:.2f}%'")
        loss_ba=$(calc "f'{(1 - $a / ($pkts * $ok)) * 100:.2f}%'")
        loss_txt="uac→uas $loss_ab, uas→uac $loss_ba"
    else
        loss_txt="-"
    fi
    { [ "$failed" -gt 0 ] || [ "$ok_stat" = 0 ]; } && { sipp_report bridged_uac "$dir"; sipp_report bridged_uas "$dir"; }
    row bridged "$rate_txt" "peak $peak concurrent (SIPp), ${mid_calls:-?} at mid-run (Starling)" "$ok" "$failed" \
        "$CPU_S" "$(per_call "$ok")" "$CPU_PCT" "$RSS_TXT" "$loss_txt" \
        "$plateau_txt; RTP relayed to the uac side: $(sink_summary "$dir/sink_uac.txt"), to the uas side: $(sink_summary "$dir/sink_uas.txt"), expected $pkts × $ok a side; uas: $(uas_summary "$uas_stats"); $(common_notes)"
    log "bridged: $ok ok, $failed failed, peak $peak, RTP loss $loss_txt, Starling CPU ${CPU_S}s (${CPU_PCT}%), RSS $RSS_TXT MB"
}

# ---------------------------------------------------------------------------------------
# (d') relay: RELAY_CONCURRENT bridged PCMU calls as in bridged, SIP and RTP from
# starling-callgen (plain UDP sockets, per-call packet counts) instead of SIPp
# ---------------------------------------------------------------------------------------
udp_counters() { # host-wide UDP counters from /proc/net/snmp: "RcvbufErrors NoPorts SndbufErrors"
    awk '$1 == "Udp:" { if (!n) { for (i = 2; i <= NF; i++) col[$i] = i; n = 1 } else print $col["RcvbufErrors"], $col["NoPorts"], $col["SndbufErrors"] }' /proc/net/snmp
}

RELAY_ENV=""   # the relay settings, for the results' command line (when the stage ran)
RELAY_SHORT="" # a note when the stage ran smaller than the issue's figure

stage_relay() {
    relay_run "$RELAY_CONCURRENT" relay udp
}

# relay_run CONC STAGE MODE: one run of starling-callgen through Dial(SIP/uas), CONC calls at
# once; MODE udp (SIP over UDP, plain RTP), tls (SIP over TLS, plain RTP) or srtp (SIP over
# TLS, SDES-SRTP on both legs). Writes the row (stage STAGE) and sets RUN_PLATEAU (Starling's
# plateau CPU %, empty without a plateau) and RUN_OK.
RUN_PLATEAU=""
RUN_OK=0
relay_run() {
    local conc=$1 stage=$2 mode=$3 tport="" pki="" gen_tls=() mode_txt
    local dir ports sport uport aport m rate conc rate_txt gen_tpid rc mid_calls mid_chans plateau_txt p_t0 p_c0
    local p_c1 loss_txt gen_pct expected gen_txt gen_pid g_c0 g_c1 gen_plateau="" rb0 np0 sb0 rb1 np1 sb1 drops_txt
    # The generator's result line (eval'd below).
    local started=0 ok=0 failed=0 unfinished=0 peak=0 a2b_sent=0 a2b_received=0 a2b_lost=0 b2a_sent=0
    local srtp_failures=0 b2a_received=0 b2a_lost=0 a2b_lost_first_s=0 b2a_lost_first_s=0 a2b_lost_last_s=0 b2a_lost_last_s=0 dup=0 reordered=0 lossy_calls=0 misrouted=0 foreign=0 unknown_stream=0
    local rtp_send_errors=0 late_ticks=0 worst_late_ms=0 worst_late_at_s=0 b_legs=0 unlinked=0 b_refused=0 no_ack=0 sip_retrans=0
    local stray=0 sip_send_errors=0 a_rcvbuf_drops=0 b_rcvbuf_drops=0 stopped_early=0 fail_reasons="" cpu_s=0 elapsed_s=0 elapsed=0
    local GEN_NAMES=starling-callgen
    RUN_PLATEAU="" RUN_OK=0
    m=$(( conc * (DURATION - RAMP) / RAMP ))
    [ "$m" -lt "$conc" ] && m=$conc
    rate=$(calc "$conc / $RAMP")
    case $mode in
        udp) mode_txt="" ;;
        tls) mode_txt=", SIP over TLS, plain RTP" ;;
        srtp) mode_txt=", SIP over TLS, SRTP on both legs" ;;
    esac
    rate_txt="$conc concurrent (ramp ${RAMP}s, ${RAMP}s calls, $m calls$mode_txt)"
    [ "$stage" = relay ] && RELAY_ENV=" RAMP=$RAMP RELAY_CONCURRENT=$conc"
    if [ "$stage" = relay ] && { [ "$conc" -lt 1800 ] || [ "$DURATION" -lt 60 ]; }; then
        RELAY_SHORT="relay: short validation run ($conc calls, ${DURATION} s of traffic; the issue's figure is 1,800 concurrent calls): read it as \"it works\", not as the issue's measurement"
    fi
    if [ ! -x "$CALLGEN" ]; then
        skip_row "$stage" "$rate_txt" "failed: no generator at $CALLGEN (cargo build --release builds it)"
        return
    fi
    dir=$(stage_dir "$stage-$mode-$conc-$(date +%s)")
    mapfile -t ports < <(free_ports 4)
    sport=${ports[0]} uport=${ports[1]} aport=${ports[2]}
    write_base_conf "$dir"
    dial_conf "$dir" "$sport" "$aport"
    if [ "$mode" != udp ]; then
        tport=${ports[3]}
        pki=$dir/pki
        make_pki "$pki" || { skip_row "$stage" "$rate_txt" "failed: openssl could not make the certificates ($pki/openssl.log)"; return; }
        tls_dial_conf "$dir" "$sport" "$tport" "$aport" "$pki" "$mode"
        gen_tls=(--tls-ca "$pki/ca.pem" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key")
        [ "$mode" = srtp ] && gen_tls+=(--srtp)
    fi
    log "$stage: $rate_txt, PCMU both ways from starling-callgen (uac 127.0.0.1:$uport, uas 127.0.0.1:$aport), Starling on 127.0.0.1:${tport:-$sport}"
    start_dial_starling "$dir" "$stage" "$rate_txt" || return
    read -r rb0 np0 sb0 < <(udp_counters)
    measure_begin
    # Bounded twice: its own --max-seconds (it then reports what it has), and timeout.
    timeout -k 5 $((DURATION + RAMP + 90)) "$CALLGEN" --target "127.0.0.1:${tport:-$sport}" "${gen_tls[@]}" \
        --uac-bind "127.0.0.1:$uport" --a-media "127.0.0.1:$((uport + 2))" \
        --uas-bind "127.0.0.1:$aport" --b-media "127.0.0.1:$((aport + 2))" \
        --rate "$rate" --concurrent "$conc" --calls "$m" --hold "$RAMP" \
        --max-seconds $((DURATION + RAMP + 60)) --out "$dir/callgen.txt" >"$dir/callgen.out" 2>"$dir/callgen.err" &
    gen_tpid=$!
    BG_PIDS+=("$gen_tpid")
    # The plateau (conc calls up) runs from t = RAMP to t = DURATION - RAMP, as in bridged.
    plateau_txt="no plateau (RAMP >= DURATION/2)"
    if [ $((DURATION - RAMP)) -gt $((RAMP + 2)) ]; then
        nap_until "$(calc "$M_T0 + $RAMP + 1")"
        gen_pid=$(child_of "$gen_tpid")
        p_t0=$(now) p_c0=$(cpu_ticks "$STARLING_PID") g_c0=$(cpu_ticks "${gen_pid:-0}")
        nap_until "$(calc "$M_T0 + $DURATION / 2")"
        mid_chans=$(rx "core show channels" | grep -E 'active channels?|active calls?|calls? processed' | tr '\n' ' ')
        nap_until "$(calc "$M_T0 + $DURATION - $RAMP")"
        p_c1=$(cpu_ticks "$STARLING_PID") g_c1=$(cpu_ticks "${gen_pid:-0}")
        RUN_PLATEAU=$(calc "f'{($p_c1 - $p_c0) / $CLK_TCK / max($(now) - $p_t0, 1e-9) * 100:.1f}'")
        plateau_txt="Starling CPU on the plateau ${RUN_PLATEAU}%"
        gen_plateau=", $(calc "f'{($g_c1 - $g_c0) / $CLK_TCK / max($(now) - $p_t0, 1e-9) * 100:.0f}'")% on the plateau"
    else
        nap $((DURATION / 2))
        mid_chans=$(rx "core show channels" | grep -E 'active channels?|active calls?|calls? processed' | tr '\n' ' ')
    fi
    mid_calls=$(sed -n 's/.*\b\([0-9][0-9]*\) active calls\{0,1\}.*/\1/p' <<<"$mid_chans" | head -1)
    wait "$gen_tpid"
    rc=$?
    forget "$gen_tpid"
    measure_end
    read -r rb1 np1 sb1 < <(udp_counters)
    stop_starling
    if [ "$rc" -ne 0 ] || [ ! -s "$dir/callgen.txt" ]; then
        log "$stage: starling-callgen exited with $rc; its stderr ($dir/callgen.err):"
        tail -5 "$dir/callgen.err" | sed 's/^/    /' >&2
        RUN_PLATEAU=""
        row "$stage" "$rate_txt" "-" "-" "-" "$CPU_S" "-" "$CPU_PCT" "$RSS_TXT" "-" \
            "failed: starling-callgen exited with $rc ($(tail -1 "$dir/callgen.err" 2>/dev/null)); $(common_notes)"
        return
    fi
    eval "$(cat "$dir/callgen.txt")"
    elapsed=$elapsed_s
    loss_txt="A→B $(calc "f'{$a2b_lost / max($a2b_sent, 1) * 100:.3f}%'") ($a2b_lost/$a2b_sent), B→A $(calc "f'{$b2a_lost / max($b2a_sent, 1) * 100:.3f}%'") ($b2a_lost/$b2a_sent)"
    # Media runs from ACK + 200 ms to BYE - 300 ms: (RAMP - 0.5) s at 50 packets/s a call and direction.
    expected=$(calc "int($ok * ($RAMP - 0.5) * 50)")
    gen_pct=$(calc "f'{$cpu_s / max($elapsed_s, 1e-9) * 100:.0f}'")
    # Where packets were dropped for a full receive buffer: the host's count over the window,
    # and the generator's own sockets' (the rest is Starling's, or another process's).
    drops_txt="UDP receive-buffer drops on the host $((rb1 - rb0)) (at starling-callgen's sockets: A $a_rcvbuf_drops, B $b_rcvbuf_drops), send-buffer errors $((sb1 - sb0)), datagrams to no socket $((np1 - np0))"
    gen_txt="starling-callgen CPU ${cpu_s} s (${gen_pct}% of one core over its ${elapsed_s} s$gen_plateau)"
    RUN_OK=$ok
    [ "$failed" -gt 0 ] && log "$stage: failed calls by reason: $fail_reasons (generator log: $dir/callgen.err)"
    row "$stage" "$rate_txt" "peak $peak up (callgen), ${mid_calls:-?} at mid-run (Starling)" "$ok" "$failed" \
        "$CPU_S" "$(per_call "$ok")" "$CPU_PCT" "$RSS_TXT" "$loss_txt" \
        "$plateau_txt; $gen_txt; RTP sent A→B $a2b_sent, B→A $b2a_sent (expected about $expected a side: $ok calls × $(calc "$RAMP - 0.5") s × 50/s), received $a2b_received and $b2a_received; of the lost, in each call's first second of media: A→B $a2b_lost_first_s, B→A $b2a_lost_first_s, in its last second: A→B $a2b_lost_last_s, B→A $b2a_lost_last_s; calls with any loss $lossy_calls, SRTP packets that did not open $srtp_failures, duplicates $dup, out of order $reordered, from the wrong port $misrouted, not ours $foreign; late ticks $late_ticks (worst ${worst_late_ms} ms, at t = ${worst_late_at_s} s); failed: ${fail_reasons:-none}, unfinished $unfinished; B legs $b_legs (not tied to a call $unlinked), SIP retransmissions $sip_retrans; $drops_txt; mid-run: ${mid_chans% }; $(common_notes)"
    log "$stage ($mode): $ok ok, $failed failed, peak $peak, RTP loss $loss_txt, Starling CPU ${CPU_S}s (${CPU_PCT}%; $plateau_txt), RSS $RSS_TXT MB, $gen_txt"
}

# ---------------------------------------------------------------------------------------
# (d'') srtp: SRTP_CALLS (300 and 600) SRTP↔SRTP bridged calls against the same plain calls,
# both over TLS, from starling-callgen; plain and SRTP runs interleaved, SRTP_PAIRS pairs
# each, the order swapped every other pair (noise on a shared machine drifts)
# ---------------------------------------------------------------------------------------
make_pki() { # DIR: ca.pem/ca.key and server.pem/server.key (subjectAltName IP:127.0.0.1) made by openssl
    local dir=$1
    mkdir -p "$dir"
    (
        cd "$dir" || exit 1
        ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        timeout 30 openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=Starling load CA" -keyout ca.key -out ca.pem &&
            timeout 30 openssl req "${ec[@]}" -subj "/CN=127.0.0.1" -keyout server.key -out server.csr &&
            printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >server.ext &&
            timeout 30 openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile server.ext -out server.pem
    ) >"$dir/openssl.log" 2>&1
}

tls_dial_conf() { # DIR SPORT TPORT ASPORT PKI MODE: dial_conf's sip.conf over TLS (MODE srtp: encryption=yes to uas)
    local dir=$1 sport=$2 tport=$3 asport=$4 pki=$5 mode=$6 encryption=no
    [ "$mode" = srtp ] && encryption=yes
    {
        sip_general "$sport"
        cat <<EOF
tlsenable = yes
tlsbindaddr = 127.0.0.1:$tport
tlscertfile = $pki/server.pem
tlsprivatekey = $pki/server.key
tlscafile = $pki/ca.pem

[uas]
type = peer
host = 127.0.0.1
port = $asport
transport = tls
encryption = $encryption
insecure = port,invite
context = load
disallow = all
allow = ulaw
EOF
    } >"$dir/etc/sip.conf"
}

stage_srtp() {
    local conc pair order mode plain srtp plain_n srtp_n p s
    for conc in $SRTP_CALLS; do
        plain=() srtp=()
        for pair in $(seq 1 "$SRTP_PAIRS"); do
            order="tls srtp"
            [ $((pair % 2)) = 0 ] && order="srtp tls"
            for mode in $order; do
                relay_run "$conc" srtp "$mode"
                [ -n "$RUN_PLATEAU" ] || continue
                if [ "$mode" = tls ]; then plain+=("$RUN_PLATEAU"); else srtp+=("$RUN_PLATEAU"); fi
            done
        done
        plain_n=${#plain[@]} srtp_n=${#srtp[@]}
        if [ "$plain_n" -eq 0 ] || [ "$srtp_n" -eq 0 ]; then
            skip_row srtp "$conc calls: plain vs SRTP" "no plateau figures to compare (see the runs above; DURATION must exceed 2 × RAMP + 2)"
            continue
        fi
        p=$(calc "sum([$(IFS=,; echo "${plain[*]}")]) / $plain_n")
        s=$(calc "sum([$(IFS=,; echo "${srtp[*]}")]) / $srtp_n")
        row srtp "$conc calls: plain vs SRTP (means of $plain_n and $srtp_n runs)" \
            "plain $(calc "f'{$p:.1f}'")% (runs: ${plain[*]}), SRTP $(calc "f'{$s:.1f}'")% (runs: ${srtp[*]}) of one core on the plateau" \
            "-" "-" "-" "-" "-" "-" "-" \
            "Starling CPU per call on the plateau: plain $(calc "f'{$p * 10000 / $conc:.0f}'") µs, SRTP $(calc "f'{$s * 10000 / $conc:.0f}'") µs of CPU per second of call (SRTP/plain $(calc "f'{$s / max($p, 1e-9):.2f}'")); both over TLS; plain legs may be relayed in the kernel (root, Linux 6.6+), SRTP legs always by the relay thread"
        log "srtp: $conc calls: plain ${plain[*]} -> $(calc "f'{$p:.1f}'")%, SRTP ${srtp[*]} -> $(calc "f'{$s:.1f}'")% of one core on the plateau"
    done
    SRTP_ENV=" RAMP=$RAMP SRTP_CALLS=\"$SRTP_CALLS\" SRTP_PAIRS=$SRTP_PAIRS"
}

# ---------------------------------------------------------------------------------------
# (e) peers: LINES register => lines and PEERS qualified peers, held PEERS_DURATION seconds
# ---------------------------------------------------------------------------------------
PEERS_ENV=""   # the peers settings, for the results' command line (when the stage ran)
PEERS_SHORT="" # a note when the stage ran smaller or shorter than the issue's figure

registry_states() { # `sip show registry` on stdin -> "State=count" lines (column State: 71-90)
    awk 'NR > 1 && length($0) >= 71 { s = substr($0, 71, 20); sub(/ +$/, "", s); n[s]++ }
         END { for (k in n) printf "%s=%d\n", k, n[k] }'
}

registered_count() { # `sip show registry` -> how many rows say Registered
    local n
    n=$(rx "sip show registry" | registry_states | sed -n 's/^Registered=//p')
    echo "${n:-0}"
}

peers_monitored() { # `sip show peers` -> "online offline" of the monitored (qualified) peers
    local out
    out=$(rx "sip show peers" | tail -1 | sed -n 's/^[0-9]* sip peers \[Monitored: \([0-9]*\) online, \([0-9]*\) offline.*/\1 \2/p')
    echo "${out:-0 0}"
}

up_text() { # SECONDS_SEEN COUNT_AT_END WANTED MAX_POLLED: when everything was up, in words
    if [ -n "$1" ]; then echo "at t = $1 s"
    elif [ "$2" -ge "$3" ]; then echo "between the last poll and the end (at most $4 at the last poll)"
    else echo "never within the run (at most $4 polled, $2 at the end)"; fi
}

yes_no() { if [ "$1" = 1 ]; then echo yes; else echo NO; fi; }
at_most() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }

stage_peers() {
    local dir ports sport rport oport dur m_reg m_opt bound reg_tpid opt_tpid reg_pid opt_pid
    local half_t="" half_c="" end_t e_t e_c hwm t n reg_s="" on_s="" reg_max=0 on_max=0
    local states registered online offline reg_stats opt_stats reg_gen opt_gen cpu_pct half_pct
    local r_total r_first r_full r_peak o_total o_first o_full o_peak r_span o_span tx target met reg_txt on_txt
    dur=$PEERS_DURATION
    PEERS_ENV=" LINES=$LINES PEERS=$PEERS PEERS_DURATION=$PEERS_DURATION"
    if [ "$LINES" -lt 10000 ] || [ "$PEERS" -lt 10000 ] || [ "$dur" -lt 300 ]; then
        PEERS_SHORT="peers: short validation run ($LINES lines + $PEERS peers held ${dur} s; the issue's figure is 10,000 + 10,000 held 300 s): read it as \"it works\", not as the issue's measurement"
    fi
    dir=$(stage_dir peers)
    mapfile -t ports < <(free_ports 3)
    sport=${ports[0]} rport=${ports[1]} oport=${ports[2]}
    write_base_conf "$dir"
    # Only the SIP channel: no dialplan is needed (nobody calls).
    printf '[modules]\nautoload = no\nload => chan_sip.so\n' >"$dir/etc/modules.conf"
    python3 - "$sport" "$rport" "$oport" "$LINES" "$PEERS" >"$dir/etc/sip.conf" <<'EOF'
import sys
sport, rport, oport, lines, peers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
print(f"[general]\nbindaddr=127.0.0.1\nbindport={sport}\nallowguest=no\nqualifyfreq=60")
for n in range(1, lines + 1):
    print(f"register => line{n:05d}@example.com:pw@127.0.0.1:{rport}/600~120")
for n in range(1, peers + 1):
    print(f"\n[peer{n:05d}]\ntype=peer\nhost=127.0.0.1\nport={oport}\nqualify=yes")
EOF
    cp "$SCENARIOS/peers_registrar.xml" "$SCENARIOS/peers_options.xml" "$dir/"
    target="$LINES lines + $PEERS qualified peers, held ${dur}s"
    log "peers: $LINES register => lines (registrar 127.0.0.1:$rport), $PEERS qualified peers (OPTIONS uas 127.0.0.1:$oport), held ${dur}s (Starling on 127.0.0.1:$sport)"
    # Each uas takes every request as a call of its own: a REGISTER per line every 105 s
    # (expiry 120 - 15), an OPTIONS per peer every 60 s (qualifyfreq), plus the first ones.
    m_reg=$((LINES * (dur / 100 + 2)))
    m_opt=$((PEERS * (dur / 50 + 2)))
    bound=$((dur + 150)) # Starling's start (at most 30 s), the hold, the reads at the end
    sipp_start peers_registrar "$dir" "$bound" -sf peers_registrar.xml -i 127.0.0.1 -p "$rport" \
        -mp $((rport + 2)) -m "$m_reg" -timeout "$((bound - 15))s" -recv_timeout 10000
    reg_tpid=$SIPP_TPID
    sipp_start peers_options "$dir" "$bound" -sf peers_options.xml -i 127.0.0.1 -p "$oport" \
        -mp $((oport + 2)) -m "$m_opt" -timeout "$((bound - 15))s" -recv_timeout 10000
    opt_tpid=$SIPP_TPID
    sleep 0.5
    if ! start_starling "$dir" chan_sip.so; then
        kill_tree "$reg_tpid"; forget "$reg_tpid"
        kill_tree "$opt_tpid"; forget "$opt_tpid"
        stop_starling
        skip_row peers "$target" "failed: Starling did not start (see the log above)"
        return
    fi
    # The window starts when Starling answers (configuration read, lines and peers scheduled).
    measure_begin
    half_t=$(calc "$M_T0 + $dur / 2")
    end_t=$(calc "$M_T0 + $dur")
    # Start-up: poll until every line is Registered and every peer online (then stop polling,
    # so the steady state is not measured with 10,000-row listings every few seconds).
    while [ -z "$reg_s" ] || [ -z "$on_s" ]; do
        t=$(now)
        at_most "$end_t" "$t" && break
        if [ -z "$half_c" ] && at_most "$half_t" "$t"; then
            half_t=$t half_c=$(cpu_ticks "$STARLING_PID")
        fi
        if [ -z "$reg_s" ]; then
            n=$(registered_count)
            [ "$n" -gt "$reg_max" ] && reg_max=$n
            [ "$n" -ge "$LINES" ] && reg_s=$(calc "f'{$t - $M_T0:.0f}'")
        fi
        if [ -z "$on_s" ]; then
            read -r n _ < <(peers_monitored)
            [ "$n" -gt "$on_max" ] && on_max=$n
            [ "$n" -ge "$PEERS" ] && on_s=$(calc "f'{$t - $M_T0:.0f}'")
        fi
        [ -n "${DEBUG:-}" ] && log "debug: t+$(calc "f'{$t - $M_T0:.0f}'") s: $reg_max Registered, $on_max online"
        nap "$PEERS_POLL"
    done
    if [ -z "$half_c" ]; then
        nap_until "$half_t"
        half_t=$(now) half_c=$(cpu_ticks "$STARLING_PID")
    fi
    nap_until "$end_t"
    e_t=$(now) e_c=$(cpu_ticks "$STARLING_PID")
    hwm=$(status_kb "$STARLING_PID" VmHWM)
    measure_end
    half_pct=$(calc "f'{($e_c - $half_c) / $CLK_TCK / max($e_t - $half_t, 1e-9) * 100:.1f}'")
    cpu_pct=$(calc "f'{$CPU_S / max($WALL, 1e-9) * 100:.1f}'")
    # The end state.
    states=$(rx "sip show registry" | registry_states | sort)
    registered=$(echo "$states" | sed -n 's/^Registered=//p')
    registered=${registered:-0}
    read -r online offline < <(peers_monitored)
    # The load generators' CPU, read before they stop.
    reg_pid=$(child_of "$reg_tpid") opt_pid=$(child_of "$opt_tpid")
    reg_gen=$(calc "f'{$(cpu_ticks "${reg_pid:-0}") / $CLK_TCK:.1f}'")
    opt_gen=$(calc "f'{$(cpu_ticks "${opt_pid:-0}") / $CLK_TCK:.1f}'")
    sipp_soft_stop "$reg_tpid" 0
    sipp_soft_stop "$opt_tpid" 0
    stop_starling
    reg_stats=$(python3 "$TOOLS/sippstat.py" "$dir/peers_registrar.csv")
    opt_stats=$(python3 "$TOOLS/sippstat.py" "$dir/peers_options.csv")
    eval "$(echo "$reg_stats" | grep -o 'elapsed=[0-9.]*')"
    # When the first request of each line / peer reached the uas, from Starling's readiness.
    eval "$(python3 "$TOOLS/arrivals.py" "$dir/peers_registrar.csv" "$LINES" "$M_T0" | sed 's/arr_/r_/g')"
    eval "$(python3 "$TOOLS/arrivals.py" "$dir/peers_options.csv" "$PEERS" "$M_T0" | sed 's/arr_/o_/g')"
    r_span=$(calc "f'over {$r_full - $r_first:.0f} s (t = $r_first–$r_full s, peak $r_peak/s)' if $r_full >= 0 else 'not all within the run ($r_total from t = $r_first s, peak $r_peak/s)'")
    o_span=$(calc "f'over {$o_full - $o_first:.0f} s (t = $o_first–$o_full s, peak $o_peak/s)' if $o_full >= 0 else 'not all within the run ($o_total from t = $o_first s, peak $o_peak/s)'")
    tx=$((r_total + o_total))
    reg_txt=$(up_text "$reg_s" "$registered" "$LINES" "$reg_max")
    on_txt=$(up_text "$on_s" "$online" "$PEERS" "$on_max")
    [ "$registered" -lt "$LINES" ] && sipp_report peers_registrar "$dir"
    [ "${online:-0}" -lt "$PEERS" ] && sipp_report peers_options "$dir"
    met="every line Registered $(yes_no $((registered >= LINES))), every peer online $(yes_no $((online >= PEERS)))"
    met="$met, CPU ≤ 5 % $(at_most "$cpu_pct" 5 && echo yes || echo NO), RSS peak ≤ 100 MiB $(at_most "$hwm" 102400 && echo yes || echo NO)"
    met="$met, first REGISTERs over ≥ 10 s $( [ "$r_full" != -1.0 ] && at_most 10 "$(calc "$r_full - $r_first")" && echo yes || echo NO)"
    met="$met, first OPTIONS over ≥ 10 s $( [ "$o_full" != -1.0 ] && at_most 10 "$(calc "$o_full - $o_first")" && echo yes || echo NO)"
    row peers "$target" "$registered/$LINES lines Registered, $online/$PEERS peers online" \
        "$((registered + online))" "$((LINES - registered + PEERS - online))" \
        "$CPU_S" "$(per_call "$tx") per REGISTER/OPTIONS" "$cpu_pct" "$RSS_TXT" "-" \
        "CPU over the second half (steady state, t = $(calc "f'{$half_t - $M_T0:.0f}'")–$(calc "f'{$e_t - $M_T0:.0f}'") s) ${half_pct}%; start-up from Starling ready: all lines Registered $reg_txt, all peers online $on_txt (polled every ${PEERS_POLL} s); the first REGISTER of each line reached the registrar $r_span, the first OPTIONS of each peer the uas $o_span; requests answered: $r_total REGISTER, $o_total OPTIONS; registry at the end: $(echo "$states" | paste -sd, -), peers offline ${offline:-?}; issue targets: $met; SIPp CPU registrar ${reg_gen} s, options ${opt_gen} s; $(common_notes)"
    log "peers: $registered/$LINES Registered, $online/$PEERS online, Starling CPU ${CPU_S}s (${cpu_pct}%, second half ${half_pct}%), RSS $RSS_TXT MB, all Registered $reg_txt, all online $on_txt, first REGISTERs $r_span, first OPTIONS $o_span"
}

# ---------------------------------------------------------------------------------------
# Run, print, record
# ---------------------------------------------------------------------------------------
log "work dir $WORK; stages: ${STAGES[*]}; DURATION=${DURATION}s"
# ---------------------------------------------------------------------------------------
# (f) ami: answered calls at AMI_RATE for DURATION/2 s with no manager session, then again with
# AMI_SESSIONS sessions reading every event: the CPU the fan-out costs
# ---------------------------------------------------------------------------------------
stage_ami() {
    local dir ports sport uport aport m half rate cpu0 pct0 sinks events per_s
    dir=$(stage_dir ami)
    mapfile -t ports < <(free_ports 2)
    sport=${ports[0]} uport=${ports[1]}
    aport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    write_base_conf "$dir"
    printf 'load => res_manager.so\n' >>"$dir/etc/modules.conf"
    printf '[general]\nenabled = yes\nport = %s\nbindaddr = 127.0.0.1\n\n[load]\nsecret = load\nread = all\nwrite = all\n' "$aport" >"$dir/etc/manager.conf"
    sip_general "$sport" >"$dir/etc/sip.conf"
    printf '[load]\nexten => _X.,1,Answer()\n same => n,Wait(1)\n same => n,Hangup()\n' >"$dir/etc/extensions.conf"
    cp "$SCENARIOS/answer_uac.xml" "$dir/"
    half=$(( DURATION / 2 > 5 ? DURATION / 2 : 5 ))
    m=$((AMI_RATE * half))
    log "ami: $AMI_RATE calls/s for ${half}s without, then ${half}s with $AMI_SESSIONS manager sessions (AMI on 127.0.0.1:$aport)"
    start_starling "$dir" "chan_sip.so pbx_config.so res_manager.so" || { skip_row ami "$AMI_SESSIONS sessions" "failed: Starling did not start (see the log above)"; return; }
    measure_begin
    sipp_start ami_bare "$dir" $((half + 60)) "127.0.0.1:$sport" -sf answer_uac.xml -s 1000 -i 127.0.0.1 -p "$uport" \
        -mp $((uport + 2)) -r "$AMI_RATE" -l $((AMI_RATE * 4)) -m "$m" -timeout "$((half + 45))s" -timeout_error -recv_timeout 10000
    sipp_wait "$SIPP_TPID"
    measure_end
    cpu0=$CPU_S pct0=$CPU_PCT
    timeout -k 5 $((half + 60)) python3 "$TOOLS/amisink.py" "$aport" load load "$AMI_SESSIONS" $((half + 4)) "$dir/amisink.txt" &
    sinks=$!
    BG_PIDS+=("$sinks")
    sleep 2
    measure_begin
    sipp_start ami_sessions "$dir" $((half + 60)) "127.0.0.1:$sport" -sf answer_uac.xml -s 1000 -i 127.0.0.1 -p "$((uport + 4))" \
        -mp $((uport + 6)) -r "$AMI_RATE" -l $((AMI_RATE * 4)) -m "$m" -timeout "$((half + 45))s" -timeout_error -recv_timeout 10000
    sipp_wait "$SIPP_TPID"
    measure_end
    wait "$sinks"
    forget "$sinks"
    eval "$(python3 "$TOOLS/sippstat.py" "$dir/ami_sessions.csv")"
    stop_starling
    events=$(cat "$dir/amisink.txt" 2>/dev/null || echo "no sink result")
    per_s=$(calc "f'{$(sed -E 's/.*min=([0-9]+).*/\1/' <<<"$events" 2>/dev/null || echo 0) / $half:.0f}'" 2>/dev/null || echo "?")
    rate=$(calc "f'{$rate:.0f}'")
    row ami "$AMI_RATE calls/s, $AMI_SESSIONS sessions" "$rate calls/s, ~$per_s events/s a session" "$ok" "$failed" \
        "$CPU_S" "$(per_call "$ok")" "$CPU_PCT" "$RSS_TXT" "-" \
        "without sessions: CPU ${cpu0}s (${pct0}%); sinks: $events; $(common_notes)"
    log "ami: with $AMI_SESSIONS sessions CPU ${CPU_S}s (${CPU_PCT}%), without ${cpu0}s (${pct0}%); $events"
}

# ---------------------------------------------------------------------------------------
# (h) blf: BLF_SUBS dialog subscriptions (guests) to BLF_HINTS hints on Custom: devices,
# established at BLF_RATE a second, each refreshed after BLF_REFRESH s without a NOTIFY, one device
# state change a second (`devstate change`); measured over BLF_REFRESH s once all are up (so
# about every subscription refreshes once in the window), then each unsubscribes. Memory per
# subscription: VmRSS with all up minus VmRSS before the first, over BLF_SUBS.
# ---------------------------------------------------------------------------------------
stage_blf() {
    local dir ports sport uport rate_in=$BLF_RATE refreshes up=0 rss_before rss_up changes=0 state t_end held
    dir=$(stage_dir blf)
    mapfile -t ports < <(free_ports 2)
    sport=${ports[0]} uport=${ports[1]}
    write_base_conf "$dir"
    printf 'load => func_devstate.so\n' >>"$dir/etc/modules.conf"
    { sip_general "$sport"; printf 'allowsubscribe = yes\nsubscribecontext = load\nminexpiry = 10\n'; } >"$dir/etc/sip.conf"
    python3 -c 'import sys
print("[load]")
for n in range(int(sys.argv[1])):
    print(f"exten => {2000 + n},hint,Custom:lamp{n}")' "$BLF_HINTS" >"$dir/etc/extensions.conf"
    python3 -c 'import sys
print("SEQUENTIAL")
for n in range(int(sys.argv[1])):
    print(f"{2000 + n % int(sys.argv[2])};w{n:05d}")' "$BLF_SUBS" "$BLF_HINTS" >"$dir/keys.csv"
    # Each subscription outlives the set-up of the others and the window: it refreshes that
    # many times before it unsubscribes.
    refreshes=$(( (BLF_SUBS / rate_in + BLF_REFRESH) / BLF_REFRESH + 1 ))
    sed -e "s/@EXPIRES@/$((BLF_REFRESH * 3))/g" -e "s/@REFRESH_MS@/$((BLF_REFRESH * 1000))/g" -e "s/@REFRESHES@/$refreshes/g" \
        "$SCENARIOS/blf_subscribe.xml" >"$dir/blf_subscribe.xml"
    log "blf: $BLF_SUBS subscriptions to $BLF_HINTS hints ($rate_in/s), refreshed every ${BLF_REFRESH}s, one state change a second (Starling on 127.0.0.1:$sport)"
    start_starling "$dir" "chan_sip.so pbx_config.so func_devstate.so" || { skip_row blf "$BLF_SUBS subscriptions" "failed: Starling did not start (see the log above)"; return; }
    rss_before=$(status_kb "$STARLING_PID" VmRSS)
    sipp_start blf "$dir" $((BLF_SUBS / rate_in + (refreshes + 2) * BLF_REFRESH + 120)) "127.0.0.1:$sport" -sf blf_subscribe.xml \
        -inf keys.csv -i 127.0.0.1 -p "$uport" -r "$rate_in" -l "$BLF_SUBS" -m "$BLF_SUBS" \
        -timeout "$((BLF_SUBS / rate_in + (refreshes + 2) * BLF_REFRESH + 90))s" -timeout_error -max_socket 4096
    # Up: every subscription listed by `sip show subscriptions` (its last line counts them).
    for _ in $(seq 1 $((BLF_SUBS / rate_in * 5 + 100))); do
        up=$(rx "sip show subscriptions" | tail -1 | grep -o '^[0-9]*')
        [ "${up:-0}" -ge "$BLF_SUBS" ] && break
        sleep 0.2
    done
    rss_up=$(status_kb "$STARLING_PID" VmRSS)
    measure_begin
    t_end=$(calc "$(now) + $BLF_REFRESH")
    while at_most "$(now)" "$t_end"; do
        state=NOT_INUSE
        [ $((changes % 2)) = 0 ] && state=INUSE
        rx "devstate change Custom:lamp$(( (changes / 2 * 7) % BLF_HINTS )) $state" >/dev/null
        changes=$((changes + 1))
        sleep 1
    done
    held=$(rx "sip show subscriptions" | tail -1 | grep -o '^[0-9]*')
    measure_end
    sipp_wait "$SIPP_TPID"
    eval "$(python3 "$TOOLS/sippstat.py" "$dir/blf.csv")"
    stop_starling
    { [ "$failed" -gt 0 ] || [ "$ok_stat" = 0 ]; } && sipp_report blf "$dir"
    row blf "$BLF_SUBS subscriptions, $BLF_HINTS hints, refresh ${BLF_REFRESH}s, 1 change/s" \
        "${up:-0} up, ${held:-?} held at the window's end" "$ok" "$failed" "$CPU_S" "-" "$CPU_PCT" "$RSS_TXT" "-" \
        "window ${WALL}s: $changes state changes ($((BLF_SUBS / BLF_HINTS)) NOTIFYs each) and about $BLF_SUBS refreshes (each subscription refreshes every ${BLF_REFRESH}s, $refreshes times, then unsubscribes); memory $(calc "f'{($rss_up - $rss_before) * 1024 / max($BLF_SUBS, 1):.0f}'") bytes a subscription (VmRSS $rss_before -> $rss_up kB with all up); retrans $retrans; $(common_notes)"
    log "blf: $ok ok, $failed failed, ${up:-0} up, ${held:-?} held, Starling CPU ${CPU_S}s (${CPU_PCT}%) over ${WALL}s, RSS $RSS_TXT MB"
}

for stage in "${STAGES[@]}"; do
    "stage_$stage"
done

HEADER="| stage | target | achieved | ok | failed | Starling CPU s | CPU / call | CPU % | RSS MB start / peak / end | RTP loss | notes |"
RULE="|---|---|---|---|---|---|---|---|---|---|---|"
TABLE=$(printf '%s\n%s\n' "$HEADER" "$RULE"; awk -F'\t' '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n" }' "$ROWS")
echo
echo "$TABLE"

if [ "$NO_RESULTS" != 1 ]; then
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
    [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && rev="$rev (tree modified)"
    if [ ! -e "$RESULTS" ]; then
        cat >"$RESULTS" <<'EOF'
# Benchmark results

Each run of the load harness (`bash benches/load/run.sh`, see `benches/load/README.md`) appends
a dated section below; older sections are kept. "CPU / call" is Starling's CPU time (user +
system, from /proc/<pid>/stat) divided by the successful calls (registrations for `register`);
"CPU %" is that CPU time over the wall time of the stage (100 % = one core); RSS is VmRSS at
the start, VmHWM (peak) and VmRSS at the end. Short validation runs are marked as such: read
their figures as "it works", not as capacity.
EOF
    fi
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo
        echo "- machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, $(awk '/MemTotal/ { printf "%.1f GB RAM", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
        echo "- starling: ${STARLING_VERSION:-?}, git $rev, binary built $(date -u -r "$STARLING" '+%Y-%m-%d %H:%M UTC')"
        echo "- SIPp: $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1 | sed 's/\.$//')"
        echo "- command: \`DURATION=$DURATION$PEERS_ENV$RELAY_ENV$SRTP_ENV $COMMAND_LINE\`"
        echo "- settings: USERS=$USERS REG_RATE=$REG_RATE ANSWER_RATE=$ANSWER_RATE B2BUA_RATE=$B2BUA_RATE B2BUA_HOLD_MS=$B2BUA_HOLD_MS CONCURRENT=$CONCURRENT RELAY_CONCURRENT=$RELAY_CONCURRENT RAMP=$RAMP LINES=$LINES PEERS=$PEERS PEERS_DURATION=$PEERS_DURATION"
        [ -n "$PEERS_SHORT" ] && echo "- note: $PEERS_SHORT"
        [ -n "$RELAY_SHORT" ] && echo "- note: $RELAY_SHORT"
        [ -n "${RESULTS_NOTE:-}" ] && echo "- note: $RESULTS_NOTE"
        echo
        echo "$TABLE"
    } >>"$RESULTS"
    log "appended to $RESULTS"
fi
