#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for torc-slurm's integration tests.
#
# Installs Debian's slurmctld, slurmd, slurm-client and munge when they are missing, starts
# munged (unless one already answers), writes a slurm.conf for a one-node cluster on this host
# (loopback only: the node and the controller are both 127.0.0.1), starts slurmctld and slurmd
# directly (containers have no systemd), waits until the node is idle and exports
# SLURM_CONF and TORC_TEST_SLURM=1. Needs root.
#
# Sourced (as .ci/run does): the daemons are stopped when the shell exits; `stop_slurm` is
# added to the `on_exit` array if the caller has one, or else set as the EXIT trap.
# Run directly (`bash .ci/slurm.sh`): the cluster stays up and the script prints the variables
# to export; `bash .ci/slurm.sh stop` stops it. Running it again restarts the cluster from a
# clean state. Everything lives in $TORC_SLURM_DIR (default /var/tmp/torc-slurm).
# A TORC_TEST_SLURM already set in the environment means a cluster is there: nothing is done.

slurm_main() {
  local dir="${TORC_SLURM_DIR:-/var/tmp/torc-slurm}"
  TORC_SLURM_DIR="$dir"

  # Stops what an earlier run started here (by the pids it recorded), then munged if we
  # started it; jobs still on the cluster are cancelled first, so that none outlives it.
  # Safe to call twice.
  stop_slurm() {
    local name pid
    if [[ -f "$TORC_SLURM_DIR/slurmctld.pid" && -f "$TORC_SLURM_DIR/slurm.conf" ]]; then
      SLURM_CONF="$TORC_SLURM_DIR/slurm.conf" timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
      for _ in $(seq 1 50); do
        [[ -z "$(SLURM_CONF="$TORC_SLURM_DIR/slurm.conf" timeout 10 squeue -h -o %i 2>/dev/null)" ]] && break
        sleep 0.2
      done
      # And for their step daemons to finish killing what they ran.
      for _ in $(seq 1 50); do
        pgrep -x slurmstepd >/dev/null || break
        sleep 0.2
      done
    fi
    for name in slurmd slurmctld munged; do
      [[ -f "$TORC_SLURM_DIR/$name.pid" ]] || continue
      pid="$(cat "$TORC_SLURM_DIR/$name.pid" 2>/dev/null || true)"
      rm -f "$TORC_SLURM_DIR/$name.pid"
      [[ "$pid" =~ ^[0-9]+$ ]] || continue
      kill "$pid" 2>/dev/null || continue
      # Bounded wait for it to go; SIGKILL after that.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done
  }

  if [[ "${1:-}" == stop ]]; then
    stop_slurm
    return 0
  fi
  if [[ -n "${TORC_TEST_SLURM:-}" ]]; then
    echo "TORC_TEST_SLURM is set already: using the Slurm cluster that is there"
    return 0
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "slurm.sh: must run as root (it starts munged, slurmctld and slurmd)" >&2
    return 1
  fi

  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
  fi

  stop_slurm
  rm -rf "$dir"
  mkdir -p "$dir/state" "$dir/spool"

  # ---- munge: the credentials every Slurm message carries.
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [[ ! -s /etc/munge/munge.key ]]; then
      mkdir -p /etc/munge
      if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
      else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
      fi
    fi
    chown munge: /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge: /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    rm -f /run/munge/munged.pid
    # munged forks and writes its pid file once its socket is ready.
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$dir/munged.pid"
    munge -n | unmunge >/dev/null
  fi

  # ---- slurm.conf: this host's CPUs and memory, as slurmd itself counts them.
  local host node_line
  host="$(hostname -s)"
  node_line="$(slurmd -C | grep '^NodeName=' | sed -e "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")"
  cat >"$dir/slurm.conf" <<EOF
# Written by .ci/slurm.sh: a one-node test cluster on loopback.
ClusterName=torc-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that asks for no memory takes the whole node.
DefMemPerCPU=1024
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
$node_line State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"

  # Both daemons fork and write their pid files; -f names the config.
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"

  # Bounded wait for the node to come up idle (polling, no blind sleep).
  local deadline=$((SECONDS + 60)) state=""
  while :; do
    state="$(sinfo -h -n "$host" -o '%T' 2>/dev/null || true)"
    [[ "$state" == idle ]] && break
    if ((SECONDS >= deadline)); then
      echo "slurm.sh: node $host not idle after 60 s (state: '${state:-no answer}')" >&2
      tail -n 30 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
      stop_slurm
      return 1
    fi
    sleep 0.2
  done

  sinfo --version
  sinfo
  TORC_SLURM_STARTED=1
  export TORC_TEST_SLURM=1
  echo "SLURM_CONF=$SLURM_CONF TORC_TEST_SLURM=$TORC_TEST_SLURM"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # Sourced: stop the cluster when the caller's shell exits.
  # (Called plainly, so that the caller's `set -e` covers every step.)
  TORC_SLURM_STARTED=""
  slurm_main "$@"
  if [[ -n "$TORC_SLURM_STARTED" ]]; then
    if declare -p on_exit >/dev/null 2>&1; then
      on_exit+=(stop_slurm)
    else
      trap stop_slurm EXIT
    fi
  fi
else
  set -euo pipefail
  slurm_main "$@"
  if [[ "${1:-}" != stop ]]; then
    echo "The cluster stays up. To use it: export SLURM_CONF=$SLURM_CONF TORC_TEST_SLURM=1"
    echo "To stop it: bash $0 stop"
  fi
fi
