#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (slurmctld + slurmd + munged, loopback only), for
# the `--executor slurm` tests of CI. Idempotent: when `sinfo` already answers with an idle
# or mixed node it returns at once.
#
# Installs Debian's `slurm-wlm` and `munge` when missing (needs root), writes a minimal
# /etc/slurm/slurm.conf (auth/munge, proctrack/linuxproc, select/cons_tres with
# CR_Core_Memory, one node with this machine's CPUs and memory, DefMemPerCPU so that a job
# does not take the whole node), starts munged as the `munge` user, then slurmctld and
# slurmd, and checks that a job really runs (`srun hostname`).
# Fails loudly (exit 1, with the daemons' logs) when any step fails.
# See docs/sweeps.md for a multi-node cluster.
set -euo pipefail

log() { echo "slurm-up: $*" >&2; }
die() {
  log "FAILED: $*"
  for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
    [ -f "$f" ] && { log "--- tail $f"; tail -n 20 "$f" >&2; }
  done
  exit 1
}

node_ready() {
  command -v sinfo >/dev/null 2>&1 || return 1
  local state
  state=$(timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n 1) || return 1
  case "$state" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

if node_ready; then
  log "Slurm is up ($(sinfo -h -N -o '%N %T %c CPUs %m MB' | head -n 1))"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "not running as root: cannot install or start Slurm"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 \
  || ! command -v sbatch >/dev/null 2>&1; then
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update"
  apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge"
fi

# --- munge: a key, its directories owned by `munge`, the daemon run as that user.
id munge >/dev/null 2>&1 || die "the munge package did not create the \`munge\` user"
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  pkill_pidfile() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null || true; }
  pkill_pidfile /run/munge/munged.pid
  su -s /bin/sh munge -c "/usr/sbin/munged" || die "munged did not start"
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
  munge -n | unmunge >/dev/null 2>&1 || die "munge credentials do not round-trip"
fi

# --- slurm.conf: one node, this machine's CPUs and memory.
cpus=$(nproc)
mem_mb=$(free -m | awk '/^Mem:/ {print $2}')
real_mb=$((mem_mb * 9 / 10)) # leave some for the system
def_mem=$((real_mb / cpus / 2))
[ "$def_mem" -ge 100 ] || def_mem=100
host=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
chown -R slurm:slurm /var/spool/slurmctld /var/log/slurm 2>/dev/null || true
conf=/etc/slurm/slurm.conf
new=$(
  cat <<EOF
# Written by scripts/slurm-up.sh: a one-node cluster on this machine (loopback only).
ClusterName=nas-ci
SlurmctldHost=${host}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${def_mem}
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
MinJobAge=300
KillWait=5
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${real_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$new" ]; then
  printf '%s\n' "$new" >"$conf"
fi

# --- daemons (started by hand: no systemd in containers).
pidfile_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! pidfile_alive /run/slurm/slurmctld.pid; then
  log "starting slurmctld"
  /usr/sbin/slurmctld || die "slurmctld did not start"
fi
if ! pidfile_alive /run/slurm/slurmd.pid; then
  log "starting slurmd"
  /usr/sbin/slurmd || die "slurmd did not start"
fi
for _ in $(seq 60); do
  node_ready && break
  # A node that came back after a restart may be `down`; return it to service.
  scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
  sleep 0.5
done
node_ready || die "the node did not become idle: $(sinfo -N 2>&1 || true)"
out=$(timeout 60 srun -N1 -n1 --mem=100 hostname 2>&1) || die "srun hostname: $out"
log "Slurm is up: $(sinfo -h -N -o '%N %T %c CPUs %m MB' | head -n 1); a job ran on $out"
