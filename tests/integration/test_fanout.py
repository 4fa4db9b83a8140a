"""Fan-out through the real daemon with the websockets library.

200 clients in 4 rooms (50 each), 5 senders per room sending text and
binary messages: every client gets exactly its room's messages, once, in
the same order as every other client of the room, each with the opcode
it was sent with. Then history replay to late joiners (oldest first,
bounded by --history), the default room, /, /healthz and /metrics.

Usage: test_fanout.py CHATFANOUTD [daemon/www/index.html]
"""
import asyncio
import json
import random
import struct
import sys
import time

import cfd

ROOMS = 4
PER_ROOM = 50
SENDERS = 5
PER_SENDER = 20
HISTORY = 10
PER_ROOM_MSGS = SENDERS * PER_SENDER

websockets = cfd.require_websockets()
chk = cfd.Checks()


def make_msg(room, sender, k):
    """Even k: JSON text with non-ASCII; odd k: binary, not UTF-8."""
    if k % 2 == 0:
        return json.dumps({'nick': 's%d' % sender,
                           'text': 'room %d sender %d msg %d \u00e9\u4e2d'
                                   % (room, sender, k)},
                          ensure_ascii=False)
    return b'BIN' + struct.pack('!HHH', room, sender, k) + bytes(range(256))


def ident(msg):
    """(room, sender, k, kind) of a received message; None if foreign."""
    if isinstance(msg, str):
        try:
            obj = json.loads(msg)
            parts = obj['text'].split()
            return (int(parts[1]), int(parts[3]), int(parts[5]), 'text')
        except (ValueError, KeyError, IndexError):
            return ('?', msg[:40])
    if msg[:3] == b'BIN' and len(msg) == 9 + 256:
        r, s, k = struct.unpack('!HHH', msg[3:9])
        return (r, s, k, 'binary')
    return ('?', msg[:40])


async def connect(base, room):
    return await websockets.connect(
        '%s/ws?room=%s' % (base, room), compression=None,
        ping_interval=None, open_timeout=20, close_timeout=2,
        max_size=1 << 20, max_queue=None)


async def collect(ws, want, timeout, settle=0.3):
    """Receives until `want` messages, then `settle` more seconds."""
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got.append(await asyncio.wait_for(ws.recv(), left))
        end = time.monotonic() + settle
        while time.monotonic() < end:
            got.append(await asyncio.wait_for(
                ws.recv(), max(0.01, end - time.monotonic())))
    except asyncio.TimeoutError:
        pass
    return got


async def send_all(ws, room, sender):
    for k in range(PER_SENDER):
        await ws.send(make_msg(room, sender, k))
        await asyncio.sleep(random.random() * 0.01)


def check_room(room, results):
    """results: one received list per client of room."""
    want = {(room, s, k, 'text' if k % 2 == 0 else 'binary')
            for s in range(SENDERS) for k in range(PER_SENDER)}
    orders = []
    bad = []
    for i, got in enumerate(results):
        ids = [ident(m) for m in got]
        if len(ids) != len(set(ids)):
            bad.append('client %d got duplicates' % i)
        foreign = [x for x in ids if x not in want]
        if foreign:
            bad.append('client %d got foreign/mistyped %r' % (i, foreign[:3]))
        missing = want - set(ids)
        if missing:
            bad.append('client %d missing %d, e.g. %r'
                       % (i, len(missing), sorted(missing)[:3]))
        for s in range(SENDERS):
            ks = [x[2] for x in ids if len(x) == 4 and x[1] == s]
            if ks != sorted(ks):
                bad.append('client %d: sender %d out of order' % (i, s))
        orders.append(ids)
    same = all(o == orders[0] for o in orders)
    chk.ok(not bad, 'room %d: every client got exactly its room\'s '
           'messages, with their opcode, sender included' % room,
           '; '.join(bad[:5]))
    chk.ok(same, 'room %d: all %d clients saw one order'
           % (room, len(results)))
    return orders[0]


async def fanout(d):
    base = d.ws_base
    before = cfd.fetch_metrics(d.addr)
    clients = await asyncio.gather(*[connect(base, 'room%d' % (i % ROOMS))
                                     for i in range(ROOMS * PER_ROOM)])
    by_room = [[c for i, c in enumerate(clients) if i % ROOMS == r]
               for r in range(ROOMS)]
    m = cfd.fetch_metrics(d.addr)
    chk.eq(m.value('chatfanout_connections') -
           before.value('chatfanout_connections'), ROOMS * PER_ROOM,
           'connections gauge counts the 200 open clients')
    chk.ok(m.value('chatfanout_rooms') >= ROOMS, 'rooms gauge >= 4',
           m.value('chatfanout_rooms'))

    t0 = time.monotonic()
    recv = [[asyncio.ensure_future(collect(c, PER_ROOM_MSGS, 60))
             for c in by_room[r]] for r in range(ROOMS)]
    await asyncio.gather(*[send_all(by_room[r][s], r, s)
                           for r in range(ROOMS) for s in range(SENDERS)])
    results = [await asyncio.gather(*recv[r]) for r in range(ROOMS)]
    cfd.log('fan-out of %d messages took %.2fs' %
            (ROOMS * PER_ROOM_MSGS, time.monotonic() - t0))
    orders = [check_room(r, results[r]) for r in range(ROOMS)]

    after = cfd.fetch_metrics(d.addr)

    def delta(name):
        return after.value(name) - before.value(name)

    chk.eq(delta('chatfanout_messages_in_total'), ROOMS * PER_ROOM_MSGS,
           'messages_in_total moved by the messages sent')
    chk.eq(delta('chatfanout_messages_out_total'),
           ROOMS * PER_ROOM_MSGS * PER_ROOM,
           'messages_out_total moved by the deliveries')
    chk.ok(delta('chatfanout_bytes_in_total') > 0, 'bytes_in_total moved')
    chk.ok(delta('chatfanout_bytes_out_total') >
           delta('chatfanout_bytes_in_total'), 'bytes_out_total moved')
    chk.ok(delta('chatfanout_fanout_seconds_count') >= ROOMS * PER_ROOM_MSGS,
           'fanout_seconds histogram counts the fan-outs',
           delta('chatfanout_fanout_seconds_count'))
    chk.ok(after.value('chatfanout_queue_publishes_total') >=
           before.value('chatfanout_queue_publishes_total'),
           'queue_publishes_total does not go back')

    await history(d, orders[0])
    await asyncio.gather(*[c.close() for c in clients])
    gone = cfd.wait_for(lambda: cfd.fetch_metrics(d.addr).value(
        'chatfanout_connections') == 0, 5)
    chk.ok(gone, 'connections gauge back to 0 after the clients left')


async def history(d, room0_order):
    base = d.ws_base
    late = await connect(base, 'room0')
    got = await collect(late, HISTORY, 5, settle=0.5)
    ids = [ident(m) for m in got]
    chk.eq(ids, room0_order[-HISTORY:],
           'late joiner gets the last --history %d messages, oldest first, '
           'with their opcodes' % HISTORY)
    await late.send(make_msg(0, 99, 0))
    live = await collect(late, 1, 5, settle=0.2)
    chk.eq([ident(m) for m in live], [(0, 99, 0, 'text')],
           'after history the late joiner gets live messages')
    await late.close()

    few = await connect(base, 'fewroom')
    for k in range(3):
        await few.send(make_msg(7, 1, k))
    echo = await collect(few, 3, 5, settle=0.1)
    await few.close()
    late2 = await connect(base, 'fewroom')
    got = await collect(late2, 3, 5, settle=0.5)
    chk.eq([ident(m) for m in got], [ident(m) for m in echo],
           'history shorter than N is replayed whole, in order')
    await late2.close()

    fresh = await connect(base, 'never-used.room_1')
    got = await collect(fresh, 0, 0, settle=0.5)
    chk.eq(got, [], 'joining an unused room replays nothing')
    await fresh.close()

    # No room parameter means the lobby.
    a = await connect(base, 'lobby')
    b = await websockets.connect(base + '/ws', compression=None,
                                 ping_interval=None, open_timeout=10)
    await b.send('to the lobby')
    got = await collect(a, 1, 5, settle=0.1)
    chk.eq(got, ['to the lobby'], '/ws without room= joins "lobby"')
    await asyncio.gather(a.close(), b.close())


async def no_history():
    with cfd.Daemon('--history', '0', tag='nohist') as d:
        a = await connect(d.ws_base, 'r')
        await a.send('one')
        await collect(a, 1, 5, settle=0)
        b = await connect(d.ws_base, 'r')
        got = await collect(b, 0, 0, settle=0.5)
        chk.eq(got, [], '--history 0 replays nothing')
        await asyncio.gather(a.close(), b.close())


def endpoints(d, page_path):
    r = cfd.http(d.addr, 'GET', '/healthz')
    chk.eq(r.status, 200, 'GET /healthz is 200')
    chk.ok(r.body.strip() == b'ok', 'GET /healthz body is "ok"', r.body)
    chk.ok('close' in (r.header('connection') or '').lower(),
           '/healthz answer carries Connection: close', r.headers)
    r = cfd.http(d.addr, 'HEAD', '/healthz')
    chk.ok(r.status == 200 and r.body == b'', 'HEAD /healthz: 200, no body',
           r)
    r = cfd.http(d.addr, 'GET', '/')
    chk.eq(r.status, 200, 'GET / is 200')
    chk.ok((r.header('content-type') or '').startswith('text/html'),
           'GET / is text/html', r.header('content-type'))
    if page_path:
        with open(page_path, 'rb') as f:
            page = f.read()
        chk.ok(r.body == page, 'GET / serves daemon/www/index.html as is',
               '%d bytes vs %d' % (len(r.body), len(page)))
        chk.eq(r.header('content-length'), str(len(page)),
               'GET / Content-Length')
    chk.ok('close' in (r.header('connection') or '').lower(),
           'GET / carries Connection: close')
    h = cfd.http(d.addr, 'HEAD', '/')
    chk.ok(h.status == 200 and h.body == b'', 'HEAD /: 200, no body', h)
    before = cfd.fetch_metrics(d.addr)
    for _ in range(3):
        cfd.http(d.addr, 'GET', '/healthz')
    after = cfd.fetch_metrics(d.addr)
    chk.ok(after.value('chatfanout_http_requests_total', code='200') >=
           before.value('chatfanout_http_requests_total', code='200') + 3,
           'http_requests_total{code="200"} counts requests')
    m = cfd.http(d.addr, 'GET', '/metrics')
    chk.ok('close' in (m.header('connection') or '').lower() and
           (m.header('content-type') or '').startswith('text/plain'),
           'GET /metrics: text/plain with Connection: close', m.headers)
    h = cfd.http(d.addr, 'HEAD', '/metrics')
    chk.ok(h.status == 200 and h.body == b'', 'HEAD /metrics: 200, no body',
           h)
    check_metric_families(after)


def check_metric_families(m):
    want = {
        'chatfanout_connections': 'gauge',
        'chatfanout_http_requests_total': 'counter',
        'chatfanout_messages_in_total': 'counter',
        'chatfanout_messages_out_total': 'counter',
        'chatfanout_bytes_in_total': 'counter',
        'chatfanout_bytes_out_total': 'counter',
        'chatfanout_slow_client_disconnects_total': 'counter',
        'chatfanout_ws_closes_total': 'counter',
        'chatfanout_rooms': 'gauge',
        'chatfanout_queue_publishes_total': 'counter',
        'chatfanout_queue_receives_total': 'counter',
        'chatfanout_queue_errors_total': 'counter',
        'chatfanout_queue_duplicates_total': 'counter',
        'chatfanout_queue_up': 'gauge',
        'chatfanout_fanout_seconds': 'histogram',
    }
    for name, typ in want.items():
        chk.eq(m.types.get(name), typ, '/metrics has %s (%s)' % (name, typ))
    others = [n for n in m.types if not n.startswith('chatfanout_')]
    chk.eq(others, [], 'every metric name starts with chatfanout_')
    chk.eq(m.value('chatfanout_queue_up'), 1.0, 'queue_up is 1 (local)')
    buckets = sorted((float(lb['le']), v) for lb, v in
                     m.series('chatfanout_fanout_seconds_bucket'))
    chk.ok(buckets and buckets[-1][0] == float('inf') and
           buckets[-1][1] == m.value('chatfanout_fanout_seconds_count') and
           all(buckets[i][1] <= buckets[i + 1][1]
               for i in range(len(buckets) - 1)),
           'fanout_seconds buckets are cumulative up to +Inf == _count')


def main():
    page = sys.argv[2] if len(sys.argv) > 2 else None
    with cfd.Daemon('--history', str(HISTORY), tag='fanout') as d:
        endpoints(d, page)
        asyncio.run(asyncio.wait_for(fanout(d), 120))
        chk.ok(d.alive(), 'daemon still running')
    asyncio.run(asyncio.wait_for(no_history(), 30))
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=180)
