#!/usr/bin/python3
"""Smoke run of cfbench against a fresh chatfanoutd (seconds, not minutes).

usage: smoke.py CHATFANOUTD CFBENCH

Starts the daemon on 127.0.0.1 port 0, reads its `listening url=` line,
then runs cfbench in each mode against it (a fresh room each time):
open loop (50 subscribers x 200 messages at 500/s), closed loop (window
8), flat (all at once, 2 publishers) and idle, and checks that every
message reached every subscriber once and in order and that the numbers
are sane; the open-loop and flat runs also write --msg-log, which is
checked line by line. Exit 0 on success.
"""
import csv
import json
import os
import re
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
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


def cfbench(path, port, pid, args):
    """Runs cfbench; returns its JSON result (exits on any failure)."""
    run = subprocess.run(
        [path, '--port', str(port), '--timeout', '5',
         '--connect-timeout', '10', '--server-pid', str(pid)] + args,
        stdout=subprocess.PIPE, text=True, timeout=60)
    print(run.stdout, end='')
    if run.returncode != 0:
        sys.exit('cfbench %s exited with %d' % (args, run.returncode))
    lines = [l for l in run.stdout.splitlines() if l.startswith('{')]
    if len(lines) != 1:
        sys.exit('expected one JSON line')
    return json.loads(lines[0])


def check_load(r, mode, count):
    want = {'mode': mode, 'lost': 0, 'dup': 0, 'ooo': 0, 'foreign': 0,
            'errors': 0, 'closed_subs': 0, 'binary': 0, 'http_ok': 0,
            'sent': count, 'deliveries': N * count, 'unique': N * count}
    bad = {k: (r.get(k), v) for k, v in want.items() if r.get(k) != v}
    if bad:
        sys.exit('%s: unexpected results (got, want): %r' % (mode, bad))
    if not (0 < r['lat_ms']['p50'] <= r['lat_ms']['p99']
            <= r['lat_ms']['max']):
        sys.exit('%s: latency percentiles out of order: %r' %
                 (mode, r['lat_ms']))
    if r['server_cpu_s'] < 0 or r['gen_cpu_s'] < 0:
        sys.exit('%s: CPU was not read' % mode)
    if r['deliveries_per_s'] <= 0:
        sys.exit('%s: no delivery rate' % mode)


def check_msg_log(path, mode, count, rate=None):
    """One line per message, in order, each delivered after it was
    queued; in open loop the stamps are the intended send times."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if [int(r['msg']) for r in rows] != list(range(count)):
        sys.exit('%s: msg log has %d lines, want messages 0..%d' %
                 (mode, len(rows), count - 1))
    for r in rows:
        stamp, late = float(r['stamp_us']), float(r['late_us'])
        first, last = float(r['first_us']), float(r['last_us'])
        if not 0 <= late <= first <= last:
            sys.exit('%s: msg log line out of order: %r' % (mode, r))
        if rate and abs(stamp - int(r['msg']) * 1e6 / rate) > 1:
            sys.exit('%s: stamp is not the intended time: %r' % (mode, r))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    daemon, port = start_daemon(sys.argv[1])
    try:
        def run(args):
            return cfbench(sys.argv[2], port, daemon.pid, args)

        n = ['-n', str(N)]
        tmp = tempfile.mkdtemp(prefix='bench-smoke-')
        log = os.path.join(tmp, 'open.csv')
        check_load(run(n + ['--count', str(COUNT), '--rate', str(RATE),
                            '--msg-log', log]), 'open', COUNT)
        check_msg_log(log, 'open', COUNT, RATE)
        check_load(run(n + ['--count', str(COUNT), '--window', '8']),
                   'closed', COUNT)
        log = os.path.join(tmp, 'flat.csv')
        check_load(run(n + ['--count', str(COUNT), '--flat',
                            '--publishers', '2', '--size', '1024',
                            '--msg-log', log]), 'flat', COUNT)
        check_msg_log(log, 'flat', COUNT)
        shutil.rmtree(tmp)
        r = run(n + ['--idle', '--idle-wait', '0.2'])
        if r['mode'] != 'idle' or r['errors'] or r['closed_subs'] or \
                r['rss_kib_before'] <= 0 or r['rss_kib_after'] <= 0:
            sys.exit('idle: unexpected results: %r' % r)
    finally:
        os.kill(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait()
    print('bench-smoke: ok')


if __name__ == '__main__':
    main()
