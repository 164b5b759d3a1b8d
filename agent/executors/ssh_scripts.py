"""The shell the SSH executor runs on a remote host (POSIX sh; bash where a builtin spares a fork).

No Python is needed remotely. Every procedure is a function, defined once per resident shell (FUNCS); a
step sends one short line that calls one (a shell reads its commands from a pipe a byte per syscall, so
a script sent per step was read byte by byte each time). Each function's output is parsed by
agent/executors/ssh_output.py.

What the functions spare the host, measured on the 30-host side by side: a read of /proc/net/tcp walks
the kernel's whole established-connection hash (4 ms a read with 262,144 buckets, on every host with
RAM), so listeners come from `ss` (a LISTEN-only netlink dump: the hash is not walked) where there is
one, and /proc/net/tcp only where there is none; forks only where no builtin does the work (links, the
pid file's inode, `ss`, `rm`): the probe forks 3 times, the stop's check, signal and settle twice.
"""

# Shell functions, defined once per resident shell; the last line says the host's boot time, clock rate
# and how `lst` reads listeners (`ss`: ss's lines; `proc`: the kernel tables' LISTEN lines).
#   st PID: S (state) and T (start time in ticks), builtins only; nap SECONDS: a sleep without a fork
#   where the shell is bash (`read -t` on a pipe nobody writes to); cs: C = uptime in 1/100 s
#   lst PORTS: LISTEN sockets on these ports; lsk KEYS PORTS: those bound to one of KEYS (ss's local
#   addresses; every one when KEYS is empty); held PORTS -- KEYS: a LISTEN socket on one of the KEYS
#   (ADDR:PORT as lst prints them; for any address ANY:PORT with ss, *:PORT with the tables) exists.
#   Lines are split in memory (`set -- $o`), never read back through a pipe or a here-document: the
#   shell reads those a byte per syscall (every listener of the host on the ports, at each poll)
#   pidtext FILE: P = its first 64 bytes, trimmed; pidhex FILE SIZE: its first 64 bytes in hex
#   inspect PID [LOCKED_INODE [1]]: a process's facts (its sockets only when the lock on LOCKED_INODE is
#   not its own, or when 1 asks for them); /proc/locks through awk (a shell reads a /proc file a line
#   at a time, seeking back, and the kernel makes it anew for each: 9 ms for 17 locks, here)
#   facts, trip, settle, sig, waitx: the executor's steps
FUNCS = r"""LC_ALL=C; export LC_ALL; DIFS=$IFS
st() { S=; T=; read -r l 2>/dev/null < /proc/$1/stat || return 1; r=${l##*) }; set -- $r; S=$1
  eval "T=\${20}"; }
cs() { read -r u _ < /proc/uptime; C=${u%.*}${u#*.}; }
if [ -n "${BASH_VERSION:-}" ]; then eval '
  exec 9<> <(:)
  nap() { read -r -t "$1" -u 9 _ 2>/dev/null; true; }
  BT=; while read -r k v; do [ "$k" = btime ] && { BT=$v; break; }; done < /proc/stat
  printf -v NL "\n"; printf -v US "\037"
  cmdv() { local a; M=; mapfile -d "" -t a < /proc/$1/cmdline 2>/dev/null || return 0
    [ ${#a[@]} -eq 0 ] || { a=("${a[@]//$NL/$US}"); printf -v M "%s\036" "${a[@]}"; }; }
  pidtext() { local c; P=; IFS= read -r -d "" -N 64 c < "$1"; c=${c#"${c%%[![:space:]]*}"}
    P=${c%"${c##*[![:space:]]}"}; }
  pidhex() { local c i=0; IFS= read -r -d "" -N 64 c < "$1"
    if [ "$2" -le 64 ] && [ ${#c} -eq "$2" ] && [ -n "$c" ] && [ -z "${c//[0-9[:space:]]/}" ]; then
      while [ $i -lt ${#c} ]; do printf "%02x" "\"${c:i:1}"; i=$((i + 1)); done; echo
    else od -An -tx1 -N64 -- "$1"; fi; }'
else
  nap() { sleep "$1"; }
  BT=$(awk '/^btime/{print $2}' /proc/stat)
  cmdv() { M=$(tr '\000\n' '\036\037' < /proc/$1/cmdline 2>/dev/null); }
  pidtext() { P=$(dd if="$1" bs=64 count=1 2>/dev/null | tr -d ' \t\r\n'); }
  pidhex() { od -An -tx1 -N64 -- "$1"; }
fi
HZ=$(getconf CLK_TCK 2>/dev/null); HZ=${HZ:-100}
if command -v ss >/dev/null 2>&1; then
  LM=ss
  lst() { local q= x; for x; do q="${q:+$q or }sport = :$x"; done
    ss -ltne ${q:+"( $q )"} 2>/dev/null; true; }
  lsk() { local ks=" $1 " o l a q= x; shift; for x; do q="${q:+$q or }sport = :$x"; done
    o=$(ss -ltne ${q:+"( $q )"} 2>/dev/null)
    [ "$ks" = "  " ] && { printf '%s\n' "$o"; return 0; }
    set -f; local IFS='
'
    for l in $o; do
      IFS=' '; set -- $l; IFS='
'
      [ "${1:-}" = LISTEN ] || continue; a=$4; case $a in *%*:*) a=${a%%\%*}:${a##*:};; esac
      case $ks in *" $a "*) printf '%s\n' "$l";; esac
    done; set +f; }
  held() { local hp=$1 o q= x k; shift 2; for x in $hp; do q="${q:+$q or }sport = :$x"; done
    o=" $(ss -ltn ${q:+"( $q )"} 2>/dev/null) "
    for k; do
      case $o in *" $k "*) return 0;; esac
      case $k in ANY:*) case $o in *":${k#ANY:} "*) return 0;; esac;; esac
    done
    return 1; }
else
  LM=proc
  lst() { local q= x; for x; do q="$q $(printf '%04X' "$x")"; done
    awk -v p="$q " '$4 == "0A" && (p == " " || index(p, " " substr($2, index($2, ":") + 1) " "))' \
      /proc/net/tcp /proc/net/tcp6 2>/dev/null; true; }
  lsk() { shift; lst "$@"; }
  held() { shift 2; awk -v w=" $* " '$4 == "0A" && (index(w, " " $2 " ") ||
    index(w, " *:" substr($2, index($2, ":") + 1) " ")) {f = 1} END {exit !f}' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
fi
inspect() {
  local p=$1 li=${2:-} all=${3:-} u= n= k v a i l x= own= L= o e c
  st $p || { echo NOPROC $p; return 0; }
  echo "PID $p"; echo "STAT $S $T"; echo "BTIME $BT"; echo "HZ $HZ"
  while read -r k v _; do [ "$k" = Uid: ] && { u=$v; break; }; done < /proc/$p/status 2>/dev/null
  echo "UID $u"
  while IFS=: read -r a _ i _; do [ "$i" = "$u" ] && { n=$a; break; }; done < /etc/passwd
  echo "USER $n"
  L=$(awk -v p="$p" -v i="$li" '$5 == p { print; n = split($6, d, ":"); if (i != "" && d[n] == i) o = 1 }
    END { if (o) print "OWN" }' /proc/locks 2>/dev/null)
  case $L in *OWN) own=1; L=${L%OWN};; ?*) L="$L
";; esac
  [ -e /proc/$p/exe ] && x=1
  if [ -z "$own" ] || [ -n "$all" ]; then set -- /proc/$p/fd/*; else set --; fi
  o=$(readlink /proc/$p/exe /proc/$p/cwd "$@" 2>/dev/null)
  set -f; IFS='
'; set -- $o; IFS=$DIFS; set +f
  e=; if [ -n "$x" ] && [ $# -gt 0 ]; then e=$1; shift; fi; c=${1:-}; [ $# -eq 0 ] || shift
  echo "EXE $e"; echo "CWD $c"; printf 'FDS '
  for l; do case $l in socket:*) printf '%s ' "$l";; esac; done; echo
  cmdv $p; printf 'CMD %s\n' "$M"
  echo LOCKS; printf '%s' "$L"
}
facts() {
  local h=$1 f=$2 all=$3 ks=$4 b I= C= s ps; shift 4; b=$h/bin/observer; ps=$*
  echo @@RESOLVE
  if cd -P -- "$h" 2>/dev/null; then echo "$PWD"; else echo "$h"; fi
  if [ -L "$b" ]; then readlink -f -- "$b" 2>/dev/null || echo "$b"
  elif cd -P -- "$h/bin" 2>/dev/null; then echo "$PWD/observer"; else echo "$b"; fi
  cd /; [ -d "$h" ] && echo HOME || echo NOHOME; [ -f "$b" ] && echo BIN || echo NOBIN
  echo @@PIDFILE
  if [ -L "$f" ]; then echo LINK; set -- $(ls -din -- "$f" 2>/dev/null); echo "${1:-}"
  elif [ ! -e "$f" ]; then echo MISSING
  elif [ ! -r "$f" ]; then echo DENIED
  else set -- $(ls -ldin -- "$f" 2>/dev/null); I=${1:-}; s=${6:-65}; echo OK; echo "$I"; pidhex "$f" "$s"
    pidtext "$f"; C=$P
  fi
  echo @@PROCESS
  case $C in ''|*[!0-9]*) echo NOPROC;; *) inspect "$C" "$I" "$all";; esac
  echo @@TCP
  lsk "$ks" $ps
}
settle() {
  local p=$1 tk=$2 n=$3 pc=$4 f=$5 w=$6 hp=$7 a b dl d gone=; shift 7
  cs; a=$C
  while [ $n -gt 0 ]; do
    st $p || { gone=1; break; }
    { [ "$S" = Z ] || [ "$T" != "$tk" ]; } && { gone=1; break; }
    nap 0.01; n=$((n - 1))
  done
  [ -n "$gone" ] || { echo ALIVE; return 0; }
  cs; b=$C; echo "EXIT $((b - a))"; dl=$((b + pc)); d=0.002
  while held "$hp" -- "$@"; do
    cs; [ "$C" -lt $dl ] || { echo HELD; return 0; }
    nap $d; case $d in 0.002) d=0.004;; 0.004) d=0.008;; 0.008) d=0.016;; 0.016) d=0.032;; *) d=0.05;; esac
  done
  cs; echo "FREE $((C - a))"
  [ -n "$f" ] && [ ! -L "$f" ] && pidtext "$f" && [ "$P" = "$w" ] && rm -f -- "$f" && echo REMOVED
  true
}
trip() {
  local p=$1 tk=$2 sg=$3 ex=$4 cw=$5 cm=$6 f=$7 w=$8
  if st $p && [ "$S" != Z ] && [ "$T" = "$tk" ]; then
    case $ex in
      *" (deleted)") [ "$(readlink /proc/$p/exe 2>/dev/null)" = "$ex" ] || { echo "CHANGED exe"; return 0; };;
      *) [ /proc/$p/exe -ef "$ex" ] || { echo "CHANGED exe"; return 0; };;
    esac
    [ /proc/$p/cwd -ef "$cw" ] || { echo "CHANGED cwd"; return 0; }
    [ -z "$cm" ] || { cmdv $p; [ "$M" = "$cm" ]; } || { echo "CHANGED cmdline"; return 0; }
    [ -z "$f" ] || { [ ! -L "$f" ] && pidtext "$f" && [ "$P" = "$w" ]; } ||
      { echo "CHANGED pidfile"; return 0; }
    if kill -s "$sg" $p 2>/dev/null; then echo SENT; else echo UNSENT; fi
  else
    [ -z "$f" ] || { [ ! -L "$f" ] && pidtext "$f" && [ "$P" = "$w" ]; } || { echo MOVED; return 0; }
    echo GONE
  fi
  local n=$9 pc=${10} hp=${11}; shift 11; settle "$p" "$tk" "$n" "$pc" "$f" "$w" "$hp" "$@"
}
sig() {
  st $1 || { echo GONE; return 0; }
  { [ "$S" = Z ] || [ "$T" != "$2" ]; } && { echo GONE; return 0; }
  kill -s "$3" $1 && echo SENT
}
waitx() {
  local n=$3
  while [ $n -gt 0 ]; do
    st $1 || { echo GONE; return 0; }
    { [ "$S" = Z ] || [ "$T" != "$2" ]; } && { echo GONE; return 0; }
    nap 0.01; n=$((n - 1))
  done
  echo ALIVE
}
echo "@@SETUP $BT $HZ $LM"
"""
# bash-only syntax is in the eval'd string, so dash parses FUNCS too (a dash that met `<(` gave up on it)

# as the SSH user, who must own HOME (observer runs as the owner of its etc/); output to a file, not our
# pipe, so the daemon it becomes holds nothing of this session
LAUNCH = """h={home}; me=$(id -un); owner=$(stat -c %U -- "$h" 2>/dev/null)
[ -n "$owner" ] || {{ echo "@@REFUSED cannot stat $h"; exit 0; }}
[ "$owner" = "$me" ] || {{
  echo "@@REFUSED $h belongs to $owner; SSH user $me cannot start it as its owner"; exit 0; }}
cd -- "$h" || {{ echo "@@REFUSED cannot cd to $h"; exit 0; }}
o=$(mktemp) || {{ echo "@@REFUSED mktemp failed"; exit 0; }}
unset LC_ALL
LD_LIBRARY_PATH="$h/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" ./bin/observer </dev/null >"$o" 2>&1; rc=$?
echo "@@USER $me"; echo "@@EXIT $rc"; tail -c 4000 "$o"; rm -f -- "$o"
"""

OWNERS = r"""for d in /proc/[0-9]*; do for f in $d/fd/*; do
  l=$(readlink "$f" 2>/dev/null) && case "$l" in socket:*) echo "${d#/proc/} $l";; esac
done; done 2>/dev/null; true
"""


# bash where there is one (its `read -t` sleeps without a fork), without rc files; else the POSIX shell
SHELL = "command -v bash >/dev/null 2>&1 && exec bash --noprofile --norc; exec /bin/sh"
