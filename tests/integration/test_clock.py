"""Steps of the wall clock do not move the daemon's timeouts.

The daemon runs under libfaketime with its wall clock (CLOCK_REALTIME,
what libev's ev_now() returns) steered through a file, the monotonic
clock left alone, as NTP steps, `date -s` or a resumed VM would do:

- forward 2 hours: a client that answers pings is not closed as idle,
  and still gets messages;
- back 2 hours: a silent client still gets pings and is closed with
  1000 "idle timeout" after --idle-timeout, not 2 hours later.

Needs libfaketime (Debian package libfaketime). Skipped under a daemon
wrapper (valgrind does not take an LD_PRELOAD for its guest this way);
meson keeps it out of suite "daemon", which scripts/test runs under
valgrind.

Usage: test_clock.py CHATFANOUTD
"""
import glob
import os
import socket
import tempfile
import time

import cfd

PING, IDLE = 0.3, 1.5
STEP = 7200
chk = cfd.Checks()


def faketime_lib():
    libs = sorted(glob.glob('/usr/lib/*/faketime/libfaketime.so.1'))
    if not libs:
        cfd.skip('libfaketime missing (apt install libfaketime)')
    return libs[0]


class Clock:
    """The daemon's wall-clock offset, in a file libfaketime re-reads."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, 'faketime')
        self.set(0)

    def set(self, seconds):
        with open(self.path + '.new', 'w') as f:
            f.write('%+d\n' % seconds)
        os.replace(self.path + '.new', self.path)

    def env(self):
        asan = os.environ.get('ASAN_OPTIONS', '')
        return {
            'LD_PRELOAD': faketime_lib(),
            'FAKETIME_TIMESTAMP_FILE': self.path,
            'FAKETIME_NO_CACHE': '1',
            'FAKETIME_DONT_FAKE_MONOTONIC': '1',
            # An ASan build wants its runtime first; libfaketime only
            # wraps the clock functions.
            'ASAN_OPTIONS': (asan + ':' if asan else '') +
            'verify_asan_link_order=0',
        }


def daemon(clock, tag):
    return cfd.Daemon('--ping-interval', '%dms' % (PING * 1000),
                      '--idle-timeout', '%dms' % (IDLE * 1000),
                      '--history', '0', env=clock.env(), tag=tag)


def read_for(c, seconds, answer):
    """Reads for `seconds`; returns (pings, close frame or None)."""
    pings, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            f = c.recv_frame(max(0.01, end - time.monotonic()))
        except socket.timeout:
            break
        except cfd.Closed:
            return pings, 'closed without a close frame'
        if f.opcode == cfd.OP_PING:
            pings += 1
            if answer:
                c.send_frame(cfd.OP_PONG, f.payload)
        elif f.opcode == cfd.OP_CLOSE:
            return pings, f
    return pings, None


def forward(tmp):
    clock = Clock(tmp)
    with daemon(clock, 'clock-forward') as d:
        c = cfd.RawWS.connect(d.addr, '/ws?room=clock')
        pings, close = read_for(c, 2 * PING, True)
        chk.ok(pings >= 1 and close is None, 'pings before the step',
               (pings, close))
        clock.set(STEP)
        pings, close = read_for(c, IDLE + 3 * PING, True)
        chk.ok(close is None, 'wall clock %+d s: a client answering pings '
               'is not closed as idle' % STEP, close and (
                   close if isinstance(close, str) else
                   (close.close_code(), close.close_reason())))
        chk.ok(pings >= 3, '  ... and keeps getting pings', pings)
        if close is None:
            c.send_text('after the step')
            chk.eq(c.recv_message(5), (cfd.OP_TEXT, b'after the step'),
                   '  ... and messages')
        c.close()
        chk.ok(d.alive(), 'daemon still running')


def backward(tmp):
    clock = Clock(tmp)
    with daemon(clock, 'clock-backward') as d:
        c = cfd.RawWS.connect(d.addr, '/ws?room=clock')
        clock.set(-STEP)
        t0 = time.monotonic()
        pings, close = read_for(c, IDLE + 2.0, False)
        dt = time.monotonic() - t0
        chk.ok(pings >= 2, 'wall clock %+d s: a silent client still gets '
               'pings' % -STEP, pings)
        got = (close.close_code(), close.close_reason()) \
            if close is not None and not isinstance(close, str) else close
        chk.eq(got, (1000, 'idle timeout'),
               '  ... and is closed with 1000 "idle timeout"')
        chk.ok(close is not None and dt <= IDLE + 1.0,
               '  ... within --idle-timeout (%.1f s)' % IDLE,
               'after %.2f s' % dt)
        c.close()
        chk.ok(d.alive(), 'daemon still running')


def main():
    cfd.skip_if_wrapped('the daemon runs under LD_PRELOAD=libfaketime')
    faketime_lib()
    with tempfile.TemporaryDirectory(prefix='cf-clock-') as tmp:
        forward(tmp)
        backward(tmp)
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=60)
