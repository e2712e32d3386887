#!/usr/bin/env bash
# Print the current value of every setting in tuning/README.md next to the recommended one.
# Read-only; needs no root. `tessera doctor` does the same from the binary, plus live io_uring
# and O_DIRECT probes.
#
#   tuning/check.sh [DEVICE ...]    (default: every non-virtual block device)
#
# Exit code: 0 when everything is as recommended, 1 when something is not (N/A never counts).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tuning/lib.sh
. "$here/lib.sh"

devices=()
for arg in "$@"; do
  case $arg in
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) devices+=("$(normalise_dev "$arg")") ;;
  esac
done
((${#devices[@]})) || mapfile -t devices < <(all_real_devs)

bad=0
row() { # STATUS NAME CURRENT RECOMMENDED
  printf '%-5s %-36s %-34s %s\n' "$1" "$2" "$3" "$4"
  [[ $1 == WARN ]] && bad=1
  return 0
}
verdict() { if [[ $1 == 1 ]]; then echo OK; else echo WARN; fi; }
na() { row N/A "$1" "not available here" "$2"; }

printf '%-5s %-36s %-34s %s\n' STATE SETTING CURRENT RECOMMENDED

release=$(readv /proc/sys/kernel/osrelease)
IFS=. read -r kmaj kmin _ <<<"$release"
row "$(verdict "$(( kmaj > 5 || (kmaj == 5 && ${kmin%%[!0-9]*} >= 15) ))")" kernel "$release" ">= 5.15"

for row_def in "${TESSERA_SYSCTLS[@]}"; do
  read -r key kind rec <<<"$row_def"
  path=$(sysctl_path "$key")
  if [[ ! -r $path ]]; then na "$key" "$(describe "$kind" "$rec")"; continue; fi
  cur=$(readv "$path")
  want=$(target_for "$kind" "$rec" "$cur")
  row "$(verdict "$([[ $want == "$cur" ]] && echo 1)")" "$key" "$cur" "$(describe "$kind" "$rec")"
done

# Limits of this shell; the service's own come from its systemd unit (LimitMEMLOCK/LimitNOFILE).
memlock=$(ulimit -l)
if [[ $memlock == unlimited ]]; then ok=1; else ok=$(( memlock >= 8192 )); fi
row "$(verdict "$ok")" "ulimit -l (KiB, this shell)" "$memlock" ">= 8192 (8 MiB); unlimited better"
nofile=$(ulimit -n)
if [[ $nofile == unlimited ]]; then ok=1; else ok=$(( nofile >= 1048576 )); fi
row "$(verdict "$ok")" "ulimit -n (this shell)" "$nofile" ">= 1048576"
if [[ -r /proc/sys/fs/nr_open ]]; then
  v=$(readv /proc/sys/fs/nr_open)
  row "$(verdict "$(( v >= 1048576 ))")" fs.nr_open "$v" ">= 1048576"
fi

for f in enabled defrag; do
  if [[ -r $THP_DIR/$f ]]; then
    v=$(selected "$(readv "$THP_DIR/$f")")
    case $v in madvise | always | defer+madvise) ok=1 ;; *) ok=0 ;; esac
    [[ $f == defrag && $v == always ]] && ok=0
    row "$(verdict "$ok")" "thp $f" "$v" "madvise"
  else
    na "thp $f" madvise
  fi
done
if [[ -r /proc/meminfo ]]; then
  row OK "hugetlb pages (info)" "$(awk '/^HugePages_Total/ {print $2}' /proc/meminfo) reserved" "0 unless the pool uses hugetlbfs"
fi

govs=$(cat /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor 2>/dev/null | sort | uniq -c | awk '{printf "%s%sx%s", sep, $1, $2; sep=","}')
if [[ -n $govs ]]; then
  row "$(verdict "$([[ $govs =~ ^[0-9]+xperformance$ ]] && echo 1)")" "cpu governor" "$govs" performance
else
  na "cpu governor" performance
fi
iso=$(readv /sys/devices/system/cpu/isolated)
row OK "isolated cpus (info)" "${iso:-none}" "optional"

if [[ -r /proc/swaps ]]; then
  swaps=$(($(wc -l </proc/swaps) - 1))
  sw=$(readv /proc/sys/vm/swappiness)
  if ((swaps == 0)); then ok=1; else ok=$(( sw <= 10 )); fi
  row "$(verdict "$ok")" "swap areas" "$swaps (swappiness $sw)" "0, or swappiness <= 10"
fi

for dev in "${devices[@]}"; do
  q=/sys/block/$dev/queue
  if [[ ! -d $q ]]; then na "$dev" "a block device"; continue; fi
  rot=$(readv "$q/rotational")
  if [[ -r $q/scheduler ]]; then
    s=$(selected "$(readv "$q/scheduler")")
    if [[ $rot == 1 ]]; then want=mq-deadline; else want=none; fi
    row "$(verdict "$([[ $s == "$want" ]] && echo 1)")" "$dev scheduler" "$s" "$want"
  else
    na "$dev scheduler" none
  fi
  if [[ -r $q/nr_requests ]]; then
    v=$(readv "$q/nr_requests")
    row "$(verdict "$(( v >= 256 ))")" "$dev nr_requests" "$v" ">= 256"
  fi
  v=$(readv "$q/read_ahead_kb")
  row "$(verdict "$(( ${v:-0} <= 128 ))")" "$dev read_ahead_kb" "$v" "0 (<= 128) if dedicated"
  row "$(verdict "$([[ $rot == 0 ]] && echo 1)")" "$dev rotational" "$rot" "0 (NVMe/SSD)"
  [[ -r $q/write_cache ]] && row OK "$dev write_cache (info)" "$(readv "$q/write_cache"), fua=$(readv "$q/fua")" "either; never force 'write through'"
done

exit "$bad"
