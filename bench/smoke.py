#!/usr/bin/python3
"""Smoke run of cfbench against a fresh chatfanoutd (seconds, not minutes).

usage: smoke.py CHATFANOUTD CFBENCH

Starts the daemon on 127.0.0.1 port 0, reads its `listening url=` line,
runs 50 subscribers x 200 messages at 500/s and checks that every
message reached every subscriber once and in order. Exit 0 on success.
"""
import json
import os
import re
import queue
import signal
import subprocess
import sys
import threading
import time

N, COUNT, RATE = 50, 200, 500


def start_daemon(path):
    proc = subprocess.Popen([path, '--listen', '127.0.0.1:0'],
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    # A reader thread, not select(): a buffered readline() may hold the
    # "listening" line already while the fd has nothing more to read.
    lines = queue.Queue()

    def pump():
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        m = re.search(r'listening url=http://127\.0\.0\.1:(\d+)/', line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    proc.wait()
    sys.exit('daemon did not report its listening url')


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    daemon, port = start_daemon(sys.argv[1])
    try:
        run = subprocess.run(
            [sys.argv[2], '--port', str(port), '-n', str(N),
             '--count', str(COUNT), '--rate', str(RATE),
             '--timeout', '5', '--connect-timeout', '10',
             '--server-pid', str(daemon.pid)],
            stdout=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.kill(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait()
    print(run.stdout, end='')
    if run.returncode != 0:
        sys.exit('cfbench exited with %d' % run.returncode)
    lines = [l for l in run.stdout.splitlines() if l.startswith('{')]
    if len(lines) != 1:
        sys.exit('expected one JSON line')
    r = json.loads(lines[0])
    want = {'lost': 0, 'dup': 0, 'ooo': 0, 'foreign': 0, 'errors': 0,
            'closed_subs': 0, 'sent': COUNT, 'deliveries': N * COUNT,
            'unique': N * COUNT}
    bad = {k: (r.get(k), v) for k, v in want.items() if r.get(k) != v}
    if bad:
        sys.exit('unexpected results (got, want): %r' % bad)
    if not (0 < r['lat_ms']['p50'] <= r['lat_ms']['p99']
            <= r['lat_ms']['max']):
        sys.exit('latency percentiles out of order: %r' % r['lat_ms'])
    if r['server_cpu_s'] < 0:
        sys.exit('server CPU was not read')
    print('bench-smoke: ok')


if __name__ == '__main__':
    main()
