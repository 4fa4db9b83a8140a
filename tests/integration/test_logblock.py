"""chatfanoutd keeps serving while nobody reads its stderr.

The daemon's stderr is a pipe that the test stops reading after the
`listening` line. Thousands of 404s (each logged at info) then fill the
pipe many times over. A daemon that writes its log with blocking writes
stops in write(2) once the pipe is full; this one must drop log lines
instead: every request is still answered, /healthz answers within a
second, chat still works, and what did reach the pipe is whole lines.

Usage: test_logblock.py CHATFANOUTD
"""
import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time

import cfd

chk = cfd.Checks()

REQUESTS = 3000
F_GETPIPE_SZ = 1032  # linux/fcntl.h


class MuteDaemon(cfd.Daemon):
    """A daemon whose stderr is read only up to its `listening` line."""

    def start(self, timeout=10.0):
        cfd.log('[%s] start: %s' % (self.tag, ' '.join(self.args)))
        self.proc = subprocess.Popen(self.args, env=self.env,
                                     stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        cfd._started.append(self)
        fd = self.proc.stderr.fileno()
        buf = b''
        deadline = time.monotonic() + timeout
        while self.url is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError('no listening line: %r' % buf)
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError('daemon exited: %r' % buf)
            buf += chunk
            for line in buf.decode('utf-8', 'replace').splitlines():
                self.url = self.url or cfd.parse_listening(line)
        m = re.match(r'^http://([^/:]+):(\d+)/$', self.url)
        self.host, self.port = m.group(1), int(m.group(2))
        # Nobody reads from here on (the pipe stays open).
        return self

    def pipe_fill(self):
        """(bytes waiting in the stderr pipe, its capacity)."""
        fd = self.proc.stderr.fileno()
        n = struct.unpack('i', fcntl.ioctl(fd, termios.FIONREAD,
                                           b'\0' * 4))[0]
        return n, fcntl.fcntl(fd, F_GETPIPE_SZ)

    def read_pipe(self):
        fd = self.proc.stderr.fileno()
        os.set_blocking(fd, False)
        data = b''
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
        except BlockingIOError:
            pass
        return data


def flood(d):
    """REQUESTS requests for an unknown path; returns how many got 404."""
    req = ('GET /no-such-page HTTP/1.1\r\nHost: %s:%d\r\n'
           'Connection: close\r\n\r\n' % d.addr).encode()
    answered = 0
    for i in range(REQUESTS):
        try:
            resp, _, how = cfd.http_raw(d.addr, req, timeout=2.0)
        except OSError as e:
            cfd.log('request %d: %s' % (i, e))
            break
        if resp is None or resp.status != 404:
            cfd.log('request %d: no 404 (%s)' % (i, how))
            break
        answered += 1
    return answered


def chat_works(d):
    a = b = None
    try:
        a = cfd.RawWS.connect(d.addr, '/ws?room=logblock', timeout=2.0)
        b = cfd.RawWS.connect(d.addr, '/ws?room=logblock', timeout=2.0)
        a.send_text('still here')
        got = [ws.recv_message(timeout=2.0) for ws in (a, b)]
        return got == [(cfd.OP_TEXT, b'still here')] * 2
    except (socket.timeout, cfd.Closed, cfd.HandshakeError) as e:
        cfd.log('chat: %r' % e)
        return False
    finally:
        for ws in (a, b):
            if ws is not None:
                ws.close()


def main():
    with MuteDaemon() as d:
        answered = flood(d)
        chk.eq(answered, REQUESTS, 'every 404 is answered while the log '
               'pipe is full')
        waiting, cap = d.pipe_fill()
        chk.ok(waiting > cap - 4096, 'the stderr pipe is full (the test '
               'condition)', '%d of %d bytes' % (waiting, cap))

        t0 = time.monotonic()
        try:
            r = cfd.http(d.addr, 'GET', '/healthz', timeout=1.0)
            status = r.status
        except (OSError, RuntimeError) as e:
            status = repr(e)
        took = time.monotonic() - t0
        chk.ok(status == 200 and took < 1.0, '/healthz answers 200 within '
               'a second', 'status %r after %.2fs' % (status, took))
        chk.ok(chat_works(d), 'chat works while the log pipe is full')

        try:
            m = cfd.fetch_metrics(d.addr)
        except (OSError, RuntimeError) as e:
            chk.ok(False, '/metrics answers', repr(e))
            return chk.result()
        if chk.ok('chatfanout_log_dropped_total' in m.types,
                  'chatfanout_log_dropped_total is exported',
                  sorted(m.types)):
            chk.ok(m.value('chatfanout_log_dropped_total') > 0,
                   'chatfanout_log_dropped_total counts the dropped lines')

        data = d.read_pipe()
        lines = data.split(b'\n')
        chk.eq(lines[-1], b'', 'the log ends with a whole line')
        bad = [ln for ln in lines[:-1]
               if not re.match(rb'^\d{4}-\d\d-\d\dT[\d:.]+Z \w+ ', ln)]
        chk.eq(bad[:3], [], 'what reached the pipe is whole log lines')

        d.signal(signal.SIGTERM)
        chk.eq(d.wait(10), 0, 'the daemon still stops cleanly on SIGTERM')
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=120)
