"""dom0 stalls: how long a lab host's dom0 goes without running a process that asked to run.

Run (root, after ./setup.sh) on a lab that is up:

    python3 bench/dom0_stalls.py [--lab xen-pool2] [--seconds 120]

In every Xen host's dom0 at once, a loop sleeps 20 ms and records how late it woke up
(the stall: nothing of dom0 ran meanwhile). Under TCG a nested dom0 stalls for whole
seconds when the machine is busy; corosync declares a member lost when its token has not
come round for `token` ms, so the token must outlast the longest stall seen here (the
pool's token comes from `detection_timeout_s`, see xenlab/toolstack/cluster.py). Prints,
per host, the number of wake-ups and the p50, p99 and largest lateness in seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.lab import attach_lab
from xenlab.lab.parallel import in_parallel

PROBE = """python3 -c '
import time
late = []
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    before = time.monotonic()
    time.sleep(0.02)
    late.append(time.monotonic() - before - 0.02)
late.sort()
print(len(late), late[len(late) // 2], late[int(len(late) * 0.99)], late[-1])
'"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default="xen-pool2")
    parser.add_argument("--seconds", type=int, default=120)
    args = parser.parse_args()
    lab = attach_lab(args.lab)

    def probe(host):
        return host.name, host.succeed(PROBE.format(seconds=args.seconds), timeout=args.seconds + 120).split()

    for name, (count, p50, p99, worst) in sorted(in_parallel(lab.hosts, probe)):
        print(f"{name}: {count} wake-ups, late p50 {float(p50):.3f} s, p99 {float(p99):.3f} s, max {float(worst):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
