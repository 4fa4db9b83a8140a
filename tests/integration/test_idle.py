"""Server pings and the idle timeout.

With --ping-interval 200ms a client receives pings; a raw client that
sends nothing (not even pongs) is closed with 1000 "idle timeout" after
--idle-timeout, while one that answers pings stays, and so does a
websockets client. With both set to 0 nothing is pinged or closed.

Usage: test_idle.py CHATFANOUTD
"""
import asyncio
import socket
import time

import cfd

PING = 0.2
IDLE = 1.0

websockets = cfd.require_websockets()
chk = cfd.Checks()


def count_pings(c, seconds, answer):
    """Reads for `seconds`; returns (pings, close frame or None)."""
    pings = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            f = c.recv_frame(max(0.01, end - time.monotonic()))
        except socket.timeout:
            break
        if f.opcode == cfd.OP_PING:
            pings += 1
            if answer:
                c.send_frame(cfd.OP_PONG, f.payload)
        elif f.opcode == cfd.OP_CLOSE:
            f.seen_at = time.monotonic()
            return pings, f
    return pings, None


async def with_pings():
    with cfd.Daemon('--ping-interval', '%dms' % (PING * 1000),
                    '--idle-timeout', '%dms' % (IDLE * 1000),
                    tag='idle') as d:
        lib = await websockets.connect(
            d.ws_base + '/ws?room=idle', compression=None,
            ping_interval=None, open_timeout=10)
        silent = cfd.RawWS.connect(d.addr, '/ws?room=idle')
        t0 = time.monotonic()
        answering = cfd.RawWS.connect(d.addr, '/ws?room=idle')

        # Both read at once: the answering one must pong while we wait.
        (pings, close), (apings, aclose) = await asyncio.gather(
            asyncio.to_thread(count_pings, silent, IDLE + 2.0, False),
            asyncio.to_thread(count_pings, answering, IDLE * 2.5, True))
        dt = close.seen_at - t0 if close else None
        chk.ok(pings >= 2, 'a client receives pings every %sms'
               % (PING * 1000), '%d pings' % pings)
        code = close.close_code() if close else None
        reason = close.close_reason() if close else None
        chk.ok(code == 1000 and reason == 'idle timeout',
               'a silent client is closed with 1000 "idle timeout"',
               (code, reason))
        chk.ok(dt is not None and IDLE * 0.8 <= dt <= IDLE + 1.0,
               'the close comes after --idle-timeout %ss' % IDLE,
               'after %s s' % dt)
        try:
            silent.send_close(1000)
        except OSError:
            pass
        chk.ok(silent.wait_eof(3.0), '  ... and its connection ends')
        silent.close()

        chk.ok(aclose is None and apings >= 4,
               'a client answering pings outlives --idle-timeout',
               'pings %d, close %r' % (apings, aclose))
        await lib.send('still there')
        chk.eq(await asyncio.wait_for(lib.recv(), 3), 'still there',
               'the websockets client (auto-pong) outlives '
               '--idle-timeout')
        chk.eq(answering.recv_message(3),
               (cfd.OP_TEXT, b'still there'),
               'the answering raw client still receives messages')
        m = cfd.fetch_metrics(d.addr)
        chk.ok(m.value('chatfanout_ws_closes_total', code='1000') >= 1,
               'ws_closes_total{code="1000"} counts the idle close')
        await lib.close()
        answering.close()
        chk.ok(d.alive(), 'daemon still running')


def without():
    with cfd.Daemon('--ping-interval', '0', '--idle-timeout', '0',
                    tag='noidle') as d:
        c = cfd.RawWS.connect(d.addr, '/ws?room=idle')
        pings, close = count_pings(c, 1.5, False)
        chk.ok(pings == 0 and close is None,
               '--ping-interval 0 --idle-timeout 0: no ping, no close',
               'pings %d, close %r' % (pings, close))
        c.send_text('alive')
        chk.eq(c.recv_message(3), (cfd.OP_TEXT, b'alive'),
               '  ... and the connection works')
        c.close()


def main():
    asyncio.run(asyncio.wait_for(with_pings(), 30))
    without()
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=60)
