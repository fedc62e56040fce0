"""Runs a command and prints its wall time and the peak resident memory of its whole process
tree (the sum over the command and every descendant, sampled every 0.2 s from /proc): Spark's
JVM, its Python driver and workers are separate processes, which GNU time's peak (the largest
single one) would not add up.

Usage: python benches/compare/tree_rss.py OUTFILE CMD [ARGS...]   (writes "wall_s peak_mib" to OUTFILE)
"""

import os
import subprocess
import sys
import time


def children():
    """{pid: ppid} of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    out[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root):
    parent = children()
    kids = {}
    for p, pp in parent.items():
        kids.setdefault(pp, []).append(p)
    todo, seen = [root], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(kids.get(p, []))
    return seen


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(rss_kib(p) for p in tree(proc.pid)))
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    with open(out, "w") as f:
        f.write(f"{wall:.2f} {peak / 1024:.0f}\n")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
