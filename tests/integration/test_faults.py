"""Faults between chatfanoutd and SQS/SNS, through faultproxy.py.

fauxqs (fauxqs_server.mjs) runs on a free loopback port; two fault
proxies (faultproxy.py) sit in front of it, and the daemons reach the
service only through them (--sqs-endpoint). Each case asserts what the
WebSocket clients receive:

 absent   a cluster of two (C, D) starts while the service is absent
          (proxy 2 resets every connection): each serves its own clients
          at once; after 30 s the backend is down and /healthz is 503;
          when the service appears (proxy 2 passes), both come up and
          messages cross. Runs beside the other cases.
 latency  500 ms added each way: every message arrives once, each
          sender's in order.
 corrupt  garbled responses (a third of them), then truncated ones
          (every one cut after 100 bytes): the daemons survive, retry,
          and once the proxy passes again every message arrives once, in
          order (responses lost in transit hide received messages until
          their visibility timeout, 30 s: the reorder window is larger).
 throttle every request answered with the AWS throttling error for 8 s:
          the backoff keeps the requests few (no hot loop), and every
          message sent meanwhile arrives afterwards.
 blackhole the service stops answering (connections accepted, never
          answered) for 25 s: calls time out (request errors counted,
          state degraded), the outage buffer stays within --sqs-buffer,
          local clients keep chatting, and everything accepted reaches the
          other instance once the proxy passes again. Meanwhile one sender
          overfills the buffer: it is closed with 1013, the refused
          message reaches nobody and is counted, the log says so once,
          and what it had sent before arrives everywhere.

Usage: test_faults.py CHATFANOUTD
"""
import asyncio
import re
import signal
import sys
import time

import cfd
import faultproxy
import test_cluster as tc

websockets = tc.websockets
chk = cfd.Checks()

BUFFER = 256 * 1024      # --sqs-buffer, the smallest allowed
REORDER = 40             # --sqs-reorder-window, s: over the 30 s
                         # visibility timeout of lost receives
DELIVERY = 60            # s for a case's messages to arrive after it
BLACKHOLE = 25           # s: longer than the 20 s call timeout
THROTTLE = 8             # s of throttling
DOWN_AFTER = 30          # s of failures before the backend is down


def args(cluster, iid):
    return ['--queue', 'sqs', '--sqs-cluster', cluster,
            '--instance-id', '%x' % iid, '--sqs-wait', '1',
            '--sqs-linger', '10ms', '--sqs-pollers', '2',
            '--sqs-buffer', '%dKiB' % (BUFFER // 1024),
            '--sqs-reorder-window', '%ds' % REORDER,
            '--sqs-heartbeat', '5s', '--sqs-stale-after', '600s',
            '--history', '0', '--shutdown-timeout', '3s',
            '--max-message-size', '64KiB', '--log-level', 'info']


def start(tag, cluster, iid, proxy):
    env = tc.daemon_env(proxy.url)
    return cfd.Daemon(*args(cluster, iid), '--sqs-endpoint', proxy.url,
                      env=env, tag=tag).start()


# --- clients ----------------------------------------------------------------

def msg(case, sender, k, size=0):
    s = 'f|%s|%s|%d|' % (case, sender, k)
    return s + 'x' * max(0, size - len(s))


def parse(m):
    if not isinstance(m, str):
        return None
    p = m.split('|')
    if len(p) != 5 or p[0] != 'f':
        return None
    return p[1], p[2], int(p[3])


class Client:
    def __init__(self, d, name, room='fault'):
        self.d, self.name, self.room = d, name, room
        self.got = []
        self.ws = None
        self.task = None
        self.close_code = None

    async def open(self):
        self.ws = await websockets.connect(
            '%s/ws?room=%s' % (self.d.ws_base, self.room), compression=None,
            ping_interval=None, open_timeout=20, close_timeout=2,
            max_size=1 << 20, max_queue=None)
        self.task = asyncio.ensure_future(self._reader())
        return self

    async def _reader(self):
        try:
            async for m in self.ws:
                p = parse(m)
                if p:
                    self.got.append(p)
        except websockets.exceptions.ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    def keys(self, case):
        return [(s, k) for c, s, k in self.got if c == case]

    async def close(self):
        try:
            await self.ws.close()
        except Exception:
            pass
        if self.task:
            await asyncio.wait([self.task], timeout=3)


async def send_series(c, case, n, pause=0.05, size=0):
    for k in range(n):
        await c.ws.send(msg(case, c.name, k, size))
        await asyncio.sleep(pause)


async def wait_all(clients, case, want, timeout):
    """Waits until each client has every (sender, k) of want."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(set(want) <= set(c.keys(case)) for c in clients):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # duplicates would show now


def check(case, clients, want, what):
    """Every client got want exactly once, each sender's in order."""
    bad = []
    for c in clients:
        got = c.keys(case)
        if len(got) != len(set(got)):
            bad.append('%s: duplicates' % c.name)
        missing = set(want) - set(got)
        if missing:
            bad.append('%s: missing %d of %d, e.g. %r' % (
                c.name, len(missing), len(want), sorted(missing)[:3]))
        extra = set(got) - set(want)
        if extra:
            bad.append('%s: unexpected %r' % (c.name, sorted(extra)[:3]))
        for s in {x[0] for x in want}:
            ks = [k for x, k in got if x == s]
            if ks != sorted(ks):
                bad.append('%s: %s out of order %r' % (c.name, s, ks[:20]))
    return chk.ok(not bad, '%s: %s' % (case, what), '; '.join(bad[:4]))


def mval(d, name, default=None, **labels):
    m = tc.metrics(d)
    return default if m is None else m.value(name, default, **labels)


async def chat(case, senders, clients, n, pause=0.05, timeout=DELIVERY):
    """Each sender sends n; every client must get all, once, in order."""
    t0 = time.monotonic()
    await asyncio.gather(*[send_series(s, case, n, pause) for s in senders])
    want = [(s.name, k) for s in senders for k in range(n)]
    await wait_all(clients, case, want, timeout)
    cfd.log('%s: %d messages delivered in %.1fs' % (
        case, len(want), time.monotonic() - t0))
    return check(case, clients, want, 'every client got every message '
                 'once, each sender in order')


# --- the cases --------------------------------------------------------------

async def absent_begin(p2):
    """C and D start while the service is absent."""
    p2.set_mode('reset')
    t0 = time.monotonic()
    c = start('C', 'cff-late', 0xfa0c, p2)
    d = start('D', 'cff-late', 0xfa0d, p2)
    a = await Client(c, 'c1').open()
    b = await Client(c, 'c2').open()
    e = await Client(d, 'd1').open()
    await send_series(a, 'local', 3, 0.01)
    await wait_all([a, b], 'local', [('c1', k) for k in range(3)], 5)
    check('local', [a, b], [('c1', k) for k in range(3)],
          'with the service absent, an instance serves its own clients '
          'at once')
    chk.eq(e.keys('local'), [], 'absent: and nothing reaches the other '
           'instance')
    chk.ok(tc.queue_state(c) in (1, 3), 'absent: queue state starting or '
           'degraded (%s)' % tc.queue_state(c))
    return dict(t0=t0, c=c, d=d, clients=[a, b, e])


async def absent_end(p2, st):
    c, d = st['c'], st['d']
    left = DOWN_AFTER + 10 - (time.monotonic() - st['t0'])
    down = await asyncio.to_thread(
        cfd.wait_for, lambda: tc.queue_state(c) == 4 and
        tc.queue_state(d) == 4, max(left, 0.1), 0.2)
    chk.ok(down, 'absent: both instances report down after %ds' %
           DOWN_AFTER)
    chk.eq((tc.health(c), tc.health(d)), (503, 503),
           'absent: /healthz 503 while down')
    p2.set_mode('pass')
    t1 = time.monotonic()
    took = await tc.wait_state([c, d], (2,), 30)
    chk.ok(all(v is not None for v in took.values()),
           'absent: both come up when the service appears (%r)' % took)
    chk.eq((tc.health(c), tc.health(d)), (200, 200),
           'absent: /healthz 200 once up')
    a, b, e = st['clients']
    await chat('joined', [a, e], [a, b, e], 5, timeout=20)
    cfd.log('absent: up %.1fs after the service appeared' %
            (time.monotonic() - t1))
    for x in (a, b, e):
        await x.close()


async def latency(p1, A, B):
    p1.set_mode('latency', ms=500)
    await chat('latency', A[:1] + B[:1], A + B, 10, pause=0.1)
    p1.set_mode('pass')


async def corrupt(p1, A, B, da, db):
    # Truncated first: a garbled Content-Length can leave a call waiting
    # for bytes that never come, until its timeout.
    p1.set_mode('truncate', k=100)
    t_g = asyncio.ensure_future(asyncio.gather(
        send_series(A[0], 'corrupt', 10, 0.6),
        send_series(B[0], 'corrupt', 10, 0.6)))
    await asyncio.sleep(3)
    p1.set_mode('garble', rate=0.33)
    await t_g
    await asyncio.sleep(2)
    st = p1.stats()
    cfd.log('corrupt: proxy %r' % st)
    chk.ok(st['garbled'] > 0 and st['truncated'] > 0,
           'corrupt: responses were truncated (%d) and garbled (%d)' % (
               st['truncated'], st['garbled']))
    p1.set_mode('pass')
    want = [(c.name, k) for c in (A[0], B[0]) for k in range(10)]
    await wait_all(A + B, 'corrupt', want, DELIVERY)
    check('corrupt', A + B, want, 'after truncated and garbled responses '
          'every message arrives once, each sender in order')
    chk.ok(da.alive() and db.alive(), 'corrupt: both daemons alive')


async def throttle(p1, A, B, da, db):
    before = [tc.metrics(d) for d in (da, db)]
    p1.set_mode('throttle')
    p1.reset_stats()
    t0 = time.monotonic()
    sends = asyncio.ensure_future(asyncio.gather(
        send_series(A[0], 'throttle', 8, 0.5),
        send_series(B[0], 'throttle', 8, 0.5)))
    await asyncio.sleep(THROTTLE / 2)
    half = p1.stats()['throttled_requests']
    await asyncio.sleep(THROTTLE / 2)
    n = p1.stats()['throttled_requests']
    secs = time.monotonic() - t0
    p1.set_mode('pass')
    await sends
    after = [tc.metrics(d) for d in (da, db)]
    retries = [a.value('chatfanout_queue_retries_total') -
               b.value('chatfanout_queue_retries_total')
               for a, b in zip(after, before)]
    cfd.log('throttle: %d requests in %.1fs (%d in the second half), '
            'retries %r' % (n, secs, n - half, retries))
    # Two daemons, each with 2 pollers, a publisher and maintenance: with
    # backoff (50 ms doubling to 2 s, full jitter) each loop makes about
    # 6 calls in its first 1.5 s, then one a second on average.
    chk.ok(0 < n <= 250, 'throttle: backoff keeps requests few: %d in '
           '%.0fs from two instances' % (n, secs))
    chk.ok(n - half <= 100, 'throttle: and no faster once backed off '
           '(%d in the last %.0fs)' % (n - half, THROTTLE / 2))
    chk.ok(all(r > 0 for r in retries), 'throttle: retries counted %r'
           % retries)
    want = [(c.name, k) for c in (A[0], B[0]) for k in range(8)]
    await wait_all(A + B, 'throttle', want, DELIVERY)
    check('throttle', A + B, want, 'messages sent while throttled arrive '
          'afterwards, once, in order')


async def blackhole(p1, A, B, da, db):
    before = [tc.metrics(d) for d in (da, db)]
    mark = len(da.log_text())
    hog = await Client(da, 'hog').open()
    p1.set_mode('blackhole')
    t0 = time.monotonic()
    sends = asyncio.ensure_future(asyncio.gather(
        send_series(A[0], 'hole', 20, 0.25),
        send_series(B[0], 'hole', 20, 0.25)))
    # A's local clients keep chatting meanwhile.
    await asyncio.sleep(1)
    local = [(A[0].name, k) for k in range(2)]
    await wait_all(A, 'hole', local, 5)
    chk.ok(all(set(local) <= set(c.keys('hole')) for c in A),
           'blackhole: local clients keep getting messages at once')
    await sends
    # Then overfill the buffer with 8 KB messages from one sender (any
    # other sender on A would be refused too while it is full).
    big = 8000
    k = 0
    while hog.close_code is None and k < 3 * BUFFER // big:
        try:
            await hog.ws.send(msg('hog', 'hog', k, big))
        except websockets.exceptions.ConnectionClosed:
            break
        k += 1
        await asyncio.sleep(0.02)
    await asyncio.wait([hog.task], timeout=5)
    chk.eq(hog.close_code, 1013, 'blackhole: a sender over --sqs-buffer '
           'is closed with 1013 (after %d messages)' % k)
    peak = 0
    while time.monotonic() - t0 < BLACKHOLE:
        b = mval(da, 'chatfanout_queue_buffered_bytes', 0)
        peak = max(peak, b)
        await asyncio.sleep(0.5)
    mid = [tc.metrics(d) for d in (da, db)]
    chk.ok(0 < peak <= BUFFER, 'blackhole: buffered bytes bounded by '
           '--sqs-buffer (peak %d of %d)' % (peak, BUFFER))
    errs = [m.value('chatfanout_queue_request_errors_total') -
            b.value('chatfanout_queue_request_errors_total')
            for m, b in zip(mid, before)]
    chk.ok(all(e > 0 for e in errs), 'blackhole: calls time out and '
           'are counted as request errors %r' % errs)
    states = [int(m.value('chatfanout_queue_state')) for m in mid]
    chk.ok(all(s in (3, 4) for s in states), 'blackhole: state degraded '
           '(%r)' % states)
    refused = mid[0].value('chatfanout_queue_errors_total') - \
        before[0].value('chatfanout_queue_errors_total')
    chk.ok(refused >= 1, 'blackhole: the refused message is counted in '
           'queue_errors_total (+%d)' % refused)
    closes = mid[0].value('chatfanout_ws_closes_total', 0, code='1013') - \
        before[0].value('chatfanout_ws_closes_total', 0, code='1013')
    chk.eq(closes, 1, 'blackhole: ws_closes_total{code="1013"} +1')
    p1.set_mode('pass')
    accepted = sorted(set(hog.keys('hog')))
    cfd.log('blackhole: the hog saw %d of its %d messages echoed' % (
        len(accepted), k))
    chk.ok(0 < len(accepted) < k, 'blackhole: the hog\'s accepted '
           'messages came back to it, the refused one did not')
    want = [(c.name, kk) for c in (A[0], B[0]) for kk in range(20)]
    await wait_all(A + B, 'hole', want, DELIVERY)
    check('hole', A + B, want, 'everything sent during the blackhole '
          'arrives once it ends, once, in order')
    await wait_all(B, 'hog', accepted, 20)
    check('hog', B, accepted, 'the other instance gets exactly what was '
          'accepted before the 1013')
    log = da.log_text()[mark:]
    chk.ok(re.search(r'queue (state|detail).*timed out', log),
           'blackhole: the log says the calls timed out')
    full = [ln for ln in log.splitlines() if re.search(
        r'1013|try again|buffer full|queue full', ln)]
    cfd.log('blackhole: log lines about the overflow: %r' % full[:5])
    chk.ok(1 <= len(full) <= 2, 'blackhole: the overflow is logged once '
           '(%d lines)' % len(full))


async def scenario(fq):
    p1 = faultproxy.FaultProxy(fq.port, seed=1).start()
    p2 = faultproxy.FaultProxy(fq.port, seed=2).start()
    ds = []
    try:
        late = await absent_begin(p2)
        ds += [late['c'], late['d']]
        da = start('A', 'cff-main', 0xfa0a, p1)
        db = start('B', 'cff-main', 0xfa0b, p1)
        ds += [da, db]
        took = await tc.wait_state([da, db], (2,), 30)
        if not chk.ok(all(v is not None for v in took.values()),
                      'A and B up through the proxy (%r)' % took):
            return
        A = [await Client(da, 'a%d' % i).open() for i in range(2)]
        B = [await Client(db, 'b%d' % i).open() for i in range(2)]
        for name, case in (('baseline', None), ('latency', latency),
                           ('corrupt', corrupt), ('throttle', throttle),
                           ('blackhole', blackhole)):
            t = time.monotonic()
            if case is None:
                await chat('baseline', A[:1] + B[:1], A + B, 5)
            elif case is latency:
                await latency(p1, A, B)
            else:
                await case(p1, A, B, da, db)
            cfd.log('=== %s took %.1fs ===' % (name, time.monotonic() - t))
            if late is not None and \
                    time.monotonic() - late['t0'] > DOWN_AFTER + 5:
                await absent_end(p2, late)
                late = None
        if late is not None:
            await absent_end(p2, late)
        for d in ds:
            chk.ok(d.alive(), '%s still running' % d.tag)
        for c in A + B:
            await c.close()
        # A clean exit after all that (leak checkers report at exit).
        for d in ds:
            d.signal(signal.SIGTERM)
        for d in ds:
            rc = await asyncio.to_thread(d.wait, 30 * cfd.SLOW)
            chk.eq(rc, 0, '%s exits 0 on SIGTERM' % d.tag)
    finally:
        p1.stop()
        p2.stop()
        for d in ds:
            d.kill()


def main():
    fq = tc.Fauxqs().start()
    t0 = time.monotonic()
    try:
        asyncio.run(asyncio.wait_for(scenario(fq), 280))
    finally:
        fq.kill()
    cfd.log('test_faults took %.1fs' % (time.monotonic() - t0))
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=300)
