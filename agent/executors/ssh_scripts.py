"""The shell scripts the SSH executor runs on a remote host (POSIX sh; bash where a builtin spares a fork).

No Python is needed remotely. Each script's output is parsed by agent/executors/ssh.py.
"""

# Shell functions the scripts share, defined once per resident shell. st sets S (state) and T (start time
# in ticks) with builtins only; nap sleeps without a fork where the shell is bash (`read -t` on a pipe
# nobody writes to), else with sleep(1). The remote host's boot time and clock rate are read once here,
# and inspect forks only for what no builtin reads well (links, the command line, the pid's own locks;
# bash reads a /proc file a byte per syscall, so no loop reads a long one): a stop polls, and 30 hosts
# polling must not cost their machines a fork per poll. lst prints only the LISTEN lines of /proc/net/tcp
# and tcp6 (on the hex ports given), not the whole tables; held says whether any LISTEN socket has one of the
# local addresses given (ADDR:PORT as the tables print them, *:PORT for any address); cs sets C to the
# uptime in 1/100 s.
FUNCS = r"""st() { S=; T=; read -r l 2>/dev/null < /proc/$1/stat || return 1; r=${l##*) }; set -- $r; S=$1
  eval "T=\${20}"; }
if [ -n "${BASH_VERSION:-}" ] && { exec 9<> <(:); } 2>/dev/null; then
  nap() { read -r -t "$1" -u 9 _ 2>/dev/null; true; }
else
  nap() { sleep "$1"; }
fi
BT=$(awk '/^btime/{print $2}' /proc/stat)
HZ=$(getconf CLK_TCK 2>/dev/null); HZ=${HZ:-100}
lst() { awk -v p=" $* " '$4 == "0A" && (p == "  " || index(p, " " substr($2, index($2, ":") + 1) " "))' \
  /proc/net/tcp /proc/net/tcp6 2>/dev/null; true; }
held() { awk -v w=" $* " '$4 == "0A" && (index(w, " " $2 " ") ||
  index(w, " *:" substr($2, index($2, ":") + 1) " ")) {f = 1} END {exit !f}' \
  /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
cs() { read -r u _ < /proc/uptime; C=${u%.*}${u#*.}; }
inspect() {
  p=$1
  st $p || { echo NOPROC; return 0; }
  echo "STAT $S $T"
  echo "BTIME $BT"
  echo "HZ $HZ"
  u=; while read -r k v _; do [ "$k" = Uid: ] && { u=$v; break; }; done < /proc/$p/status 2>/dev/null
  echo "UID $u"
  n=; while IFS=: read -r a _ i _; do [ "$i" = "$u" ] && { n=$a; break; }; done < /etc/passwd
  echo "USER $n"
  echo "EXE $(readlink /proc/$p/exe 2>/dev/null)"
  echo "CWD $(readlink /proc/$p/cwd 2>/dev/null)"
  printf 'CMD '; tr '\000' '\036' < /proc/$p/cmdline 2>/dev/null; echo
  printf 'FDS '
  for l in $(readlink /proc/$p/fd/* 2>/dev/null); do case $l in socket:*) printf '%s ' "$l";; esac; done
  echo
  echo LOCKS; awk -v p=$p '$5 == p' /proc/locks
}
pidfile() {
  f=$1
  if [ -L "$f" ]; then echo LINK; ls -di "$f" | awk '{print $1}'
  elif [ ! -e "$f" ]; then echo MISSING
  elif [ ! -r "$f" ]; then echo DENIED
  else echo OK; ls -di "$f" | awk '{print $1}'
    dd if="$f" bs=64 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n'; echo
  fi
}
"""

# one round trip for every fact a probe needs; sections are marked, the pid file's bytes are hex
# (LISTEN lines on the target ports only: all that the identity proof and the port checks look at)
FACTS = """h={home}; f={pid_file}
echo @@RESOLVE
(cd -- "$h" 2>/dev/null && pwd -P) || echo "$h"
readlink -f "$h/bin/observer" 2>/dev/null || echo "$h/bin/observer"
[ -d "$h" ] && echo HOME || echo NOHOME
[ -f "$h/bin/observer" ] && echo BIN || echo NOBIN
echo @@PIDFILE
pidfile "$f"
echo @@PROCESS
c=""; [ -f "$f" ] && [ ! -L "$f" ] && c=$(dd if="$f" bs=64 count=1 2>/dev/null | tr -d ' \\n\\t')
case "$c" in ''|*[!0-9]*) echo NOPROC;; *) inspect "$c";; esac
echo @@TCP
lst {ports}
"""

SIGNAL = """p={pid}
st $p || {{ echo GONE; exit 0; }}
[ "$S" = Z ] || [ "$T" != "{ticks}" ] && {{ echo GONE; exit 0; }}
kill -s {sig} $p && echo SENT
"""

WAIT = """p={pid}; n={rounds}
while [ $n -gt 0 ]; do
  st $p || {{ echo GONE; exit 0; }}
  [ "$S" = Z ] || [ "$T" != "{ticks}" ] && {{ echo GONE; exit 0; }}
  nap 0.01; n=$((n-1))
done
echo ALIVE
"""

# after the signal, in one trip: the exit (as _WAIT), then the ports free (polled, 2 ms doubling to 50 ms),
# then the pid file removed if it still names the stopped pid; times in 1/100 s of the remote uptime
SETTLE = """p={pid}; n={rounds}; cs; a=$C; gone=
while [ $n -gt 0 ]; do
  st $p || {{ gone=1; break; }}
  [ "$S" = Z ] || [ "$T" != "{ticks}" ] && {{ gone=1; break; }}
  nap 0.01; n=$((n-1))
done
[ -n "$gone" ] || {{ echo ALIVE; exit 0; }}
cs; b=$C; echo "EXIT $((b - a))"; dl=$((b + {port_cs})); d=0.002
while held {keys}; do
  cs; [ "$C" -lt $dl ] || {{ echo HELD; exit 0; }}
  nap $d; case $d in 0.002) d=0.004;; 0.004) d=0.008;; 0.008) d=0.016;; 0.016) d=0.032;; *) d=0.05;; esac
done
cs; echo "FREE $((C - a))"
f={pid_file}; [ -n "$f" ] && [ ! -L "$f" ] && [ "$(dd if="$f" bs=64 count=1 2>/dev/null)" = {want} ] &&
  rm -f -- "$f" && echo REMOVED; true
"""

# as the SSH user, who must own HOME (observer runs as the owner of its etc/); output to a file, not our
# pipe, so the daemon it becomes holds nothing of this session
LAUNCH = """h={home}; me=$(id -un); owner=$(stat -c %U -- "$h" 2>/dev/null)
[ -n "$owner" ] || {{ echo "@@REFUSED cannot stat $h"; exit 0; }}
[ "$owner" = "$me" ] || {{
  echo "@@REFUSED $h belongs to $owner; SSH user $me cannot start it as its owner"; exit 0; }}
cd -- "$h" || {{ echo "@@REFUSED cannot cd to $h"; exit 0; }}
o=$(mktemp) || {{ echo "@@REFUSED mktemp failed"; exit 0; }}
LD_LIBRARY_PATH="$h/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" ./bin/observer </dev/null >"$o" 2>&1; rc=$?
echo "@@USER $me"; echo "@@EXIT $rc"; tail -c 4000 "$o"; rm -f -- "$o"
"""

OWNERS = r"""for d in /proc/[0-9]*; do for f in $d/fd/*; do
  l=$(readlink "$f" 2>/dev/null) && case "$l" in socket:*) echo "${d#/proc/} $l";; esac
done; done 2>/dev/null; true
"""


# bash where there is one (its `read -t` sleeps without a fork), without rc files; else the POSIX shell
SHELL = "command -v bash >/dev/null 2>&1 && exec bash --noprofile --norc; exec /bin/sh"
