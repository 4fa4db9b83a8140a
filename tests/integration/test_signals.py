"""SIGTERM and SIGINT: every client gets close 1001 "going away" and the
daemon exits 0 within --shutdown-timeout, even when one client never
answers its close.

Usage: test_signals.py CHATFANOUTD
"""
import asyncio
import signal
import time

import cfd

SHUTDOWN = 2.0
SLACK = 1.5

websockets = cfd.require_websockets()
chk = cfd.Checks()


async def scenario(sig):
    name = signal.Signals(sig).name
    with cfd.Daemon('--shutdown-timeout', '%ds' % SHUTDOWN,
                    tag=name.lower()) as d:
        wss = [await websockets.connect(
            d.ws_base + '/ws?room=r%d' % (i % 2), compression=None,
            ping_interval=None, open_timeout=10, close_timeout=5)
            for i in range(3)]
        polite = cfd.RawWS.connect(d.addr, '/ws?room=r0')
        deaf = cfd.RawWS.connect(d.addr, '/ws?room=r1')
        await wss[0].send('hello')
        chk.eq(await asyncio.wait_for(wss[2].recv(), 5), 'hello',
               '%s: clients chat before the signal' % name)
        chk.eq(polite.recv_message(5), (cfd.OP_TEXT, b'hello'),
               '%s: raw client chats before the signal' % name)

        t0 = time.monotonic()
        d.signal(sig)
        # The deaf client keeps the daemon draining for --shutdown-timeout.
        await asyncio.sleep(0.2)
        # Stopping means the listener is closed at once: new connections,
        # health checks included, are refused while clients drain.
        try:
            health = cfd.http(d.addr, 'GET', '/healthz', timeout=1).status
        except ConnectionRefusedError:
            health = 'refused'
        except OSError as e:
            health = repr(e)
        chk.ok(health == 'refused', '%s: the listener is closed while the '
               'daemon drains' % name, 'got %s' % health)
        polite_close = await asyncio.to_thread(polite.expect_close, 5.0)
        try:
            polite.send_close(1001)
        except OSError:
            pass
        for i, ws in enumerate(wss):
            try:
                await asyncio.wait_for(ws.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
            chk.ok(ws.close_code == 1001 and ws.close_reason == 'going away',
                   '%s: websockets client %d got close 1001 "going away"'
                   % (name, i), (ws.close_code, ws.close_reason))
        chk.ok(polite_close[:2] == (1001, 'going away'),
               '%s: raw client got close 1001 "going away"' % name,
               polite_close)
        rc = await asyncio.to_thread(d.wait, SHUTDOWN + SLACK + 3)
        dt = time.monotonic() - t0
        chk.ok(rc == 0 and dt <= SHUTDOWN + SLACK,
               '%s: daemon exits 0 within --shutdown-timeout %ss although '
               'one client never answers' % (name, SHUTDOWN),
               'status %r after %.2fs' % (rc, dt))
        deaf_close = deaf.expect_close(2.0)
        chk.ok(deaf_close[:2] == (1001, 'going away'),
               '%s: the client that never read finds close 1001 queued'
               % name, deaf_close)
        deaf.close()
        polite.close()


def no_clients():
    with cfd.Daemon(tag='idle-term') as d:
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait(SHUTDOWN + 5)
        dt = time.monotonic() - t0
        chk.ok(rc == 0 and dt < 1.5,
               'SIGTERM with no clients: exit 0 at once',
               'status %r after %.2fs' % (rc, dt))


def inherited_blocked():
    # A parent may start the daemon with the stop signals blocked (the
    # mask survives exec); it must still stop on SIGTERM and SIGINT.
    for sig in (signal.SIGTERM, signal.SIGINT):
        old = signal.pthread_sigmask(signal.SIG_BLOCK,
                                     {signal.SIGTERM, signal.SIGINT})
        try:
            d = cfd.Daemon(tag='blocked-%s' % sig.name)
            d.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        try:
            t0 = time.monotonic()
            d.signal(sig)
            rc = d.wait(SHUTDOWN + 5)
            dt = time.monotonic() - t0
            chk.ok(rc == 0 and dt < 1.5,
                   '%s inherited blocked: still exit 0 at once' % sig.name,
                   'status %r after %.2fs' % (rc, dt))
        finally:
            d.kill()


def main():
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.run(asyncio.wait_for(scenario(sig), 30))
    no_clients()
    inherited_blocked()
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=90)
