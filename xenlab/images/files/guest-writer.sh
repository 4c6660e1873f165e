#!/bin/busybox sh
# Disk writer of the xenlab PV guest: record N at byte N*512 of DEVICE, each carrying
# its sequence number, a filler and the sha256 of both (format: xenlab/metrics.py).
# Each record is synced before the next, so after a power cut at most the record in
# flight is missing. A restarted writer resumes at the first empty record.
dev="$1"
seq=0
while [ -n "$(dd if="$dev" bs=512 skip="$seq" count=1 2>/dev/null | head -c 16 | tr -d '\0')" ]; do
    seq=$((seq + 1))
done
while :; do
    s=$(printf %016d "$seq")
    f=$(printf "%429s" "" | tr ' ' "$((seq % 10))")
    h=$(printf %s%s "$s" "$f" | sha256sum | cut -c1-64)
    printf '%s %s %s\n' "$s" "$h" "$f" | dd of="$dev" bs=512 seek="$seq" count=1 conv=notrunc,fsync 2>/dev/null
    seq=$((seq + 1))
    sleep 1  # light on purpose: a busy guest would slow its own migration (1 vCPU under TCG)
done
