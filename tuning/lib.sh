# shellcheck shell=bash
# Shared by apply.sh and check.sh: the recommended values of the runtime-changeable settings
# (see README.md for the reasons). Sourced, not run.

# sysctl  kind  recommended
#   kind: min  = at least this number (never lowered if already higher)
#         eq   = exactly this value
#         max3 = third field (the maximum) at least this number; first two kept
#         range = "lo hi" with span at least (hi - lo) of the recommendation
# shellcheck disable=SC2034 # used by the scripts that source this file
TESSERA_SYSCTLS=(
  "kernel.io_uring_disabled eq 0"
  "net.core.somaxconn min 4096"
  "net.ipv4.tcp_max_syn_backlog min 8192"
  "net.core.netdev_max_backlog min 16384"
  "net.core.rmem_max min 16777216"
  "net.core.wmem_max min 16777216"
  "net.ipv4.tcp_rmem max3 16777216"
  "net.ipv4.tcp_wmem max3 16777216"
  "net.ipv4.tcp_tw_reuse eq 1"
  "net.ipv4.ip_local_port_range range 10240_65535"
  "vm.swappiness maxval 10"
)

# shellcheck disable=SC2034
THP_DIR=/sys/kernel/mm/transparent_hugepage

# The bracketed choice of a sysfs selector line: "[mq-deadline] kyber none" -> mq-deadline.
selected() {
  local w
  for w in $1; do
    case $w in \[*\]) w=${w#[}; printf '%s\n' "${w%]}"; return 0 ;; esac
  done
  printf '%s\n' "$1"
}

sysctl_path() { printf '/proc/sys/%s\n' "${1//.//}"; }

# Normalised (single-spaced) contents of a file, or empty.
readv() { [[ -r $1 ]] && tr -s ' \t' '  ' <"$1" | sed 's/ *$//'; }

# target_for KIND RECOMMENDED CURRENT -> the value to write (equals CURRENT when already fine).
target_for() {
  local kind=$1 rec=$2 cur=$3 a b c lo hi rlo rhi
  case $kind in
    eq) printf '%s\n' "$rec" ;;
    min) if ((cur >= rec)); then printf '%s\n' "$cur"; else printf '%s\n' "$rec"; fi ;;
    maxval) if ((cur <= rec)); then printf '%s\n' "$cur"; else printf '%s\n' "$rec"; fi ;;
    max3)
      read -r a b c <<<"$cur"
      if ((c >= rec)); then printf '%s\n' "$cur"; else printf '%s %s %s\n' "$a" "$b" "$rec"; fi ;;
    range)
      read -r lo hi <<<"$cur"
      rlo=${rec%_*} rhi=${rec#*_}
      if ((hi - lo >= rhi - rlo)); then printf '%s\n' "$cur"; else printf '%s %s\n' "$rlo" "$rhi"; fi ;;
    *) printf '%s\n' "$cur" ;;
  esac
}

# Human form of a recommendation.
describe() {
  local kind=$1 rec=$2
  case $kind in
    eq) printf '%s\n' "$rec" ;;
    min) printf '>= %s\n' "$rec" ;;
    maxval) printf '<= %s\n' "$rec" ;;
    max3) printf 'max >= %s\n' "$rec" ;;
    range) printf '%s (or wider)\n' "${rec/_/ }" ;;
  esac
}

# Block devices to treat as data devices: the arguments (names or /dev paths), else none.
normalise_dev() { local d=${1#/dev/}; printf '%s\n' "${d%/}"; }

is_virtual_dev() { case $1 in loop* | ram* | zram* | sr* | fd* | nbd*) return 0 ;; esac; return 1; }

all_real_devs() {
  local p n
  for p in /sys/block/*; do
    [[ -e $p ]] || continue
    n=${p##*/}
    is_virtual_dev "$n" || printf '%s\n' "$n"
  done
}
