#!/usr/bin/env bash
# Apply the runtime-changeable settings of tuning/README.md. Idempotent: a setting already at (or
# better than) its recommendation is left alone; numbers are raised, never lowered.
#
#   tuning/apply.sh [--dry-run | --apply] [--persist] [DEVICE ...]
#
#   --dry-run   (default) print what would change, change nothing
#   --apply     change it (needs root)
#   --persist   also write /etc/sysctl.d/90-tessera.conf and a udev rule for the given devices
#               (printed, not written, under --dry-run)
#   DEVICE      block devices holding tessera data (nvme0n1 or /dev/nvme0n1): scheduler none,
#               nr_requests >= 256, read_ahead_kb 0. Without devices no per-device change is made.
#
# Not handled here (boot or service settings, see README.md): memlock and nofile limits,
# isolcpus/nohz_full, IRQ affinity, swap removal, filesystems.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tuning/lib.sh
. "$here/lib.sh"

mode=dry-run
persist=0
devices=()
for arg in "$@"; do
  case $arg in
    --dry-run) mode=dry-run ;;
    --apply) mode=apply ;;
    --persist) persist=1 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "apply.sh: unknown option $arg" >&2; exit 2 ;;
    *) devices+=("$(normalise_dev "$arg")") ;;
  esac
done

if [[ $mode == apply && $EUID -ne 0 ]]; then
  echo "apply.sh: --apply needs root" >&2
  exit 1
fi

changes=0 failures=0
# set_file PATH VALUE LABEL: write VALUE to PATH unless it already reads back as VALUE.
set_file() {
  local path=$1 want=$2 label=$3 cur
  if [[ ! -e $path ]]; then
    printf '  skip    %-46s not available here (%s)\n' "$label" "$path"
    return 0
  fi
  cur=$(readv "$path")
  if [[ $cur == "$want" ]] || [[ $(selected "$cur") == "$want" ]]; then
    printf '  ok      %-46s %s\n' "$label" "$cur"
    return 0
  fi
  changes=$((changes + 1))
  if [[ $mode == dry-run ]]; then
    printf '  would   %-46s %s -> %s\n' "$label" "$cur" "$want"
  elif printf '%s\n' "$want" >"$path" 2>/dev/null; then
    printf '  set     %-46s %s -> %s\n' "$label" "$cur" "$(readv "$path")"
  else
    failures=$((failures + 1))
    printf '  FAILED  %-46s %s -> %s (write refused)\n' "$label" "$cur" "$want"
  fi
}

echo "== sysctls ($mode)"
sysctl_conf=""
for row in "${TESSERA_SYSCTLS[@]}"; do
  read -r key kind rec <<<"$row"
  path=$(sysctl_path "$key")
  if [[ ! -e $path ]]; then
    printf '  skip    %-46s not available here\n' "$key"
    continue
  fi
  cur=$(readv "$path")
  want=$(target_for "$kind" "$rec" "$cur")
  set_file "$path" "$want" "$key"
  sysctl_conf+="$key = $want"$'\n'
done

echo "== transparent huge pages"
set_file "$THP_DIR/enabled" madvise "thp enabled"
set_file "$THP_DIR/defrag" madvise "thp defrag"

echo "== CPU frequency governor"
found=0
for gov in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
  [[ -e $gov ]] || continue
  found=1
  cpu=${gov#/sys/devices/system/cpu/}
  set_file "$gov" performance "${cpu%%/*} governor"
done
((found)) || echo "  skip    cpufreq not available here (VM or no frequency driver)"

echo "== block devices"
if ((${#devices[@]} == 0)); then
  echo "  none given; pass the data devices, e.g.: $0 $mode $(all_real_devs | grep '^nvme' | tr '\n' ' ')"
fi
for dev in "${devices[@]}"; do
  q=/sys/block/$dev/queue
  if [[ ! -d $q ]]; then
    printf '  FAILED  %-46s no such block device (%s)\n' "$dev" "$q"
    failures=$((failures + 1))
    continue
  fi
  if [[ $(readv "$q/rotational") == 1 ]]; then
    set_file "$q/scheduler" mq-deadline "$dev scheduler (rotational)"
  else
    set_file "$q/scheduler" none "$dev scheduler"
  fi
  nr=$(readv "$q/nr_requests")
  if [[ -n $nr ]] && ((nr < 256)); then
    # The hardware queue depth caps it under scheduler none; try deep, then the minimum we want.
    if [[ $mode == apply ]] && ! printf '1023\n' >"$q/nr_requests" 2>/dev/null; then
      set_file "$q/nr_requests" 256 "$dev nr_requests"
    else
      set_file "$q/nr_requests" 1023 "$dev nr_requests"
    fi
  else
    printf '  ok      %-46s %s\n' "$dev nr_requests" "${nr:-n/a}"
  fi
  set_file "$q/read_ahead_kb" 0 "$dev read_ahead_kb"
done

if ((persist)); then
  echo "== persistence"
  udev=""
  for dev in "${devices[@]}"; do
    sched=none
    [[ $(readv "/sys/block/$dev/queue/rotational") == 1 ]] && sched=mq-deadline
    udev+="ACTION==\"add|change\", KERNEL==\"$dev\", ATTR{queue/scheduler}=\"$sched\", ATTR{queue/read_ahead_kb}=\"0\""$'\n'
  done
  if [[ $mode == dry-run ]]; then
    printf '  would write /etc/sysctl.d/90-tessera.conf:\n%s' "    ${sysctl_conf//$'\n'/$'\n'    }"
    echo
    [[ -n $udev ]] && printf '  would write /etc/udev/rules.d/60-tessera.rules:\n%s\n' "    ${udev//$'\n'/$'\n'    }"
  else
    printf '# Written by tessera tuning/apply.sh\n%s' "$sysctl_conf" >/etc/sysctl.d/90-tessera.conf
    echo "  wrote /etc/sysctl.d/90-tessera.conf"
    if [[ -n $udev ]]; then
      printf '# Written by tessera tuning/apply.sh\n%s' "$udev" >/etc/udev/rules.d/60-tessera.rules
      echo "  wrote /etc/udev/rules.d/60-tessera.rules"
    fi
  fi
fi

echo
if [[ $mode == dry-run ]]; then
  echo "$changes setting(s) would change; run with --apply to change them."
else
  echo "$changes setting(s) changed or attempted, $failures failed."
fi
echo "Not runtime settings (see README.md): LimitMEMLOCK/LimitNOFILE, isolcpus/nohz_full, IRQ affinity, swapoff, filesystems."
((failures == 0))
