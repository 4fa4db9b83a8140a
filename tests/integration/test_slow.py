"""A slow consumer is closed; everybody else gets every message.

One raw client with a tiny SO_RCVBUF joins and never reads while three
websockets clients receive a flood. With --client-buffer 64KiB the slow
one must be closed (close 1008 "slow consumer" if it reads far enough to
see the close frame, else a dropped connection), the fast ones get every
message in order, and chatfanout_slow_client_disconnects_total >= 1.
A third client resets its connection mid-flood (SIGPIPE must not kill
the daemon).

Usage: test_slow.py CHATFANOUTD
"""
import asyncio
import socket
import struct
import time

import cfd

MSG = 4096
BATCH = 8  # 32 KiB a batch: half a --client-buffer, framing included
MAX_MSGS = 4096  # 16 MiB: far beyond any kernel buffering on loopback

websockets = cfd.require_websockets()
chk = cfd.Checks()


def payload(i):
    return struct.pack('!I', i) + bytes([i & 0xFF]) * (MSG - 4)


async def receiver(ws, counts, idx, out):
    while True:
        m = await ws.recv()
        out.append(m)
        counts[idx] += 1


def vanish(c):
    """Resets the connection (RST) with data still flowing to it."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack('ii', 1, 0))
    c.close()


async def flood(d, slow, gone):
    fast = [await websockets.connect(
        d.ws_base + '/ws?room=flood', compression=None, ping_interval=None,
        max_size=1 << 20, max_queue=None, open_timeout=10) for _ in range(3)]
    counts = [0, 0, 0]
    got = [[], [], []]
    tasks = [asyncio.ensure_future(receiver(ws, counts, i, got[i]))
             for i, ws in enumerate(fast)]
    sent = 0
    closed_at = None
    while sent < MAX_MSGS:
        for _ in range(BATCH):
            await fast[0].send(payload(sent))
            sent += 1
        deadline = time.monotonic() + 20
        while min(counts) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        if min(counts) < sent:
            break
        if sent == BATCH * 4:
            vanish(gone)
        if closed_at is None and sent % (BATCH * 8) == 0:
            m = cfd.fetch_metrics(d.addr)
            if m.value('chatfanout_slow_client_disconnects_total') >= 1:
                closed_at = sent
        if closed_at is not None and sent >= closed_at + BATCH * 8:
            break
    cfd.log('sent %d messages of %d bytes; slow client closed by %s'
            % (sent, MSG, closed_at))
    for t in tasks:
        t.cancel()
    want = [payload(i) for i in range(sent)]
    for i in range(3):
        chk.ok(got[i] == want, 'fast client %d got all %d messages in order'
               % (i, sent), 'got %d' % len(got[i]))
    chk.ok(closed_at is not None, 'the slow client was closed during the '
           'flood (slow_client_disconnects_total >= 1)')

    # Now the slow one reads what was left for it.
    frames = []
    how = None
    code = reason = None
    while True:
        try:
            f = slow.recv_frame(10.0)
        except cfd.Closed as e:
            how = e.how
            break
        except OSError as e:
            how = 'error %r' % e
            break
        if f.opcode == cfd.OP_CLOSE:
            how, code, reason = 'close', f.close_code(), f.close_reason()
            break
        frames.append(f)
    data = [f.payload for f in frames if f.opcode == cfd.OP_BINARY]
    chk.ok(data == want[:len(data)] and len(data) < sent,
           'the slow client got a clean prefix of the messages, not all',
           '%d of %d' % (len(data), sent))
    if how == 'close':
        chk.ok(code == 1008 and reason == 'slow consumer',
               'the slow client\'s close frame is 1008 "slow consumer"',
               (code, reason))
    else:
        chk.ok(how in ('eof', 'reset'), 'the slow client was dropped',
               how)
    cfd.log('slow client: %d messages then %s %s %r'
            % (len(data), how, code, reason))
    slow.close()
    m = cfd.fetch_metrics(d.addr)
    chk.ok(m.value('chatfanout_slow_client_disconnects_total') >= 1,
           'slow_client_disconnects_total >= 1')
    chk.ok(m.value('chatfanout_ws_closes_total', code='1008') >= 1,
           'ws_closes_total{code="1008"} >= 1')
    chk.ok(cfd.wait_for(lambda: cfd.fetch_metrics(d.addr).value(
        'chatfanout_connections') == 3.0, 3),
        'connections gauge: the 3 fast clients remain')
    await fast[1].send('after the flood')
    for ws in fast:
        msg = await asyncio.wait_for(ws.recv(), 5)
        chk.eq(msg, 'after the flood', 'fast clients still chat')
    await asyncio.gather(*[ws.close() for ws in fast])


def main():
    # The daemon wants one largest message to fit in a client's buffer.
    with cfd.Daemon('--client-buffer', '64KiB', '--max-message-size', '16KiB',
                    '--history', '0',
                    tag='slow') as d:
        slow = cfd.RawWS.connect(d.addr, '/ws?room=flood', rcvbuf=4096)
        gone = cfd.RawWS.connect(d.addr, '/ws?room=flood', rcvbuf=4096)
        asyncio.run(asyncio.wait_for(flood(d, slow, gone), 150))
        chk.ok(d.alive(), 'daemon still running')
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=200)
