"""Frames sent in the same write as the upgrade request.

A client may send its first frames right behind the HTTP head, before
the 101 arrives (RFC 6455 lets it send once the handshake is sent from
its side; many clients batch). The daemon keeps those bytes and reads
them once the 101 is out; what they produce (the messages they publish,
a pong, the answer to a close) must go out at once, not at the loop's
next unrelated wake-up (a timer seconds later). With the default ping
interval (30 s) nothing else wakes the daemon here.

Usage: test_early.py CHATFANOUTD
"""
import time

import cfd

chk = cfd.Checks()
LIMIT = 1.0 * cfd.SLOW   # the bug this guards against waited up to 10 s


def early_text(d, room, text, listener):
    """A client whose first frame came with its head; returns how long
    until the listener in the room got it, and the sender's echo."""
    t0 = time.monotonic()
    c = cfd.RawWS.connect(d.addr, '/ws?room=' + room,
                          early=cfd.encode_frame(cfd.OP_TEXT, text))
    got = listener.recv_message(10)
    dt = time.monotonic() - t0
    echo = c.recv_message(10)
    return c, got, dt, echo


def main():
    # No history: a joining client gets only what is sent after it.
    with cfd.Daemon('--history', '0', tag='early') as d:
        listener = cfd.RawWS.connect(d.addr, '/ws?room=early')
        for i in range(5):
            text = b'early %d' % i
            c, got, dt, echo = early_text(d, 'early', text, listener)
            chk.eq(got, (cfd.OP_TEXT, text),
                   'message %d sent with the upgrade reaches the room' % i)
            chk.ok(dt < LIMIT, '  ... within %.1f s' % LIMIT,
                   'after %.2f s' % dt)
            chk.eq(echo, (cfd.OP_TEXT, text), '  ... and its sender')
            c.close()
            time.sleep(0.3)  # the loop goes idle between the attempts

        t0 = time.monotonic()
        c = cfd.RawWS.connect(d.addr, '/ws?room=early',
                              early=cfd.encode_frame(cfd.OP_PING, b'p1'))
        f = c.recv_frame(10)
        dt = time.monotonic() - t0
        chk.ok(f.opcode == cfd.OP_PONG and f.payload == b'p1',
               'a ping sent with the upgrade gets its pong', f)
        chk.ok(dt < LIMIT, '  ... within %.1f s' % LIMIT,
               'after %.2f s' % dt)
        c.close()

        early = (cfd.encode_frame(cfd.OP_TEXT, b'a') +
                 cfd.encode_frame(cfd.OP_TEXT, b'b') +
                 cfd.encode_frame(cfd.OP_CLOSE, b'\x03\xe8'))
        t0 = time.monotonic()
        c = cfd.RawWS.connect(d.addr, '/ws?room=early', early=early)
        got = [listener.recv_message(10), listener.recv_message(10)]
        echo = [c.recv_message(10), c.recv_message(10)]
        f = c.recv_frame(10)
        dt = time.monotonic() - t0
        chk.eq(got, [(cfd.OP_TEXT, b'a'), (cfd.OP_TEXT, b'b')],
               'two messages and a close with the upgrade: the room gets '
               'both, in order')
        chk.eq(echo, [(cfd.OP_TEXT, b'a'), (cfd.OP_TEXT, b'b')],
               '  ... so does the sender')
        chk.ok(f.opcode == cfd.OP_CLOSE and f.close_code() == 1000,
               '  ... then its close is answered with 1000', f)
        chk.ok(dt < LIMIT, '  ... all within %.1f s' % LIMIT,
               'after %.2f s' % dt)
        chk.ok(c.wait_eof(5.0), '  ... and the connection ends')
        c.close()

        listener.send_text('still here')
        chk.eq(listener.recv_message(5), (cfd.OP_TEXT, b'still here'),
               'the listener still works')
        listener.close()
        chk.ok(d.alive(), 'daemon still running')
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=90)
