#!/bin/bash
# Slurm batch script: one scheduler on the first node, one single-thread worker per task,
# the search master on the first node. Submit: sbatch --ntasks=32 deploy/cluster/slurm-search.sh [search flags]
#SBATCH --job-name=hostside-menndl
#SBATCH --cpus-per-task=1
set -euo pipefail
export OMP_NUM_THREADS=1
SCHED_FILE="$PWD/scheduler-$SLURM_JOB_ID.json"
dask scheduler --no-dashboard --scheduler-file "$SCHED_FILE" &
while [ ! -s "$SCHED_FILE" ]; do sleep 1; done
srun --ntasks="$SLURM_NTASKS" dask worker --scheduler-file "$SCHED_FILE" --nthreads 1 --no-dashboard &
ADDRESS=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['address'])" "$SCHED_FILE")
hostside search --strategy menndl --cluster "$ADDRESS" "$@"
