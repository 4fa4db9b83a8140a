"""A TCP fault proxy for the integration tests (stdlib only).

FaultProxy listens on 127.0.0.1 (port 0: a free one) and forwards every
connection to an upstream (the SQS/SNS emulator). A test imports it and
changes its mode at any time; the proxy runs its own asyncio loop in a
daemon thread, so the test's code stays synchronous or async as it likes.

Modes (set_mode(name, **params)):

  pass       forward both ways
  latency    forward, each chunk held ms milliseconds in each direction
  drop       new connections: accepted, then closed (FIN); open ones
             are closed at once
  reset      like drop but with a RST (SO_LINGER 0)
  blackhole  new connections: accepted, read, never answered; open ones
             go silent (their data is read and discarded both ways)
  truncate   forward only the first k bytes of each response (the bytes
             upstream sends after a request), then close
  garble     forward, but corrupt each response chunk with probability
             rate: a few bytes overwritten at random offsets
  throttle   answer every HTTP request here with the AWS throttling error
             of its protocol (SQS JSON: 400 ThrottlingException; SNS
             query: 400 Throttling; code= and status= change them, e.g.
             code=RequestThrottled), keep-alive; open connections are
             closed so that every request comes to this mode

Counters (stats()): connections accepted, upstream connect failures,
bytes each way, responses truncated or garbled, requests answered in
throttle mode. reset_stats() zeroes them.

  python3 faultproxy.py UPSTREAM_PORT [MODE]   runs one by hand: prints
  "faultproxy listening url=http://127.0.0.1:PORT", then reads commands
  from stdin, one per line: "MODE [key=value ...]", "stats", "quit".
"""
import asyncio
import json
import random
import socket
import struct
import sys
import threading
import time

MODES = ('pass', 'latency', 'drop', 'reset', 'blackhole', 'truncate',
         'garble', 'throttle')
_CUT_MODES = ('drop', 'reset', 'throttle')
_HEAD_MAX = 64 * 1024
_BODY_MAX = 16 * 1024 * 1024


def _rst(writer):
    """Closes with a RST: SO_LINGER on, 0 seconds."""
    sock = writer.get_extra_info('socket')
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack('ii', 1, 0))
    except (OSError, AttributeError):
        pass
    writer.transport.abort()


def _throttle_reply(head, params):
    """The AWS throttling answer for one request head (bytes); params
    may name the error code and the HTTP status."""
    text = head.decode('latin-1').lower()
    status = int(params.get('status', 400))
    if 'x-amz-target:' in text or 'application/x-amz-json' in text:
        body = json.dumps({
            '__type': 'com.amazonaws.sqs#' + params.get(
                'code', 'ThrottlingException'),
            'message': 'Rate exceeded (faultproxy)'}).encode()
        ctype = 'application/x-amz-json-1.0'
    else:
        body = (b'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/'
                b'2010-03-31/"><Error><Type>Sender</Type><Code>' +
                params.get('code', 'Throttling').encode() +
                b'</Code><Message>Rate exceeded (faultproxy)</Message>'
                b'</Error><RequestId>00000000-0000-0000-0000-000000000000'
                b'</RequestId></ErrorResponse>')
        ctype = 'text/xml'
    return (b'HTTP/1.1 %d Throttled\r\nContent-Type: ' % status +
            ctype.encode() +
            b'\r\nContent-Length: ' + str(len(body)).encode() +
            b'\r\nx-amzn-RequestId: 00000000-0000-0000-0000-000000000000'
            b'\r\n\r\n' + body)


def _content_length(head):
    for line in head.split(b'\r\n')[1:]:
        name, sep, value = line.partition(b':')
        if sep and name.strip().lower() == b'content-length':
            try:
                n = int(value.strip())
            except ValueError:
                return None
            return n if 0 <= n <= _BODY_MAX else None
    return 0


class _Conn:
    """One accepted client connection and, maybe, its upstream."""

    def __init__(self, proxy, reader, writer):
        self.p = proxy
        self.cr, self.cw = reader, writer
        self.ur = self.uw = None
        self.resp_bytes = 0     # bytes of the current response forwarded
        self.closed = False

    def close(self, rst=False):
        if self.closed:
            return
        self.closed = True
        self.p._conns.discard(self)
        for w in (self.cw, self.uw):
            if w is None:
                continue
            if rst and w is self.cw:
                _rst(w)
            else:
                w.transport.abort() if rst else w.close()

    async def run(self):
        try:
            mode = self.p.mode
            if mode == 'drop':
                self.close()
            elif mode == 'reset':
                self.close(rst=True)
            elif mode == 'blackhole':
                await self._sink(self.cr)
            elif mode == 'throttle':
                await self._throttle()
            else:
                await self._relay()
        except (OSError, asyncio.IncompleteReadError, EOFError):
            pass
        finally:
            self.close()

    async def _sink(self, reader):
        while await reader.read(65536):
            pass

    async def _throttle(self):
        buf = b''
        while True:
            while b'\r\n\r\n' not in buf:
                chunk = await self.cr.read(65536)
                if not chunk or len(buf) > _HEAD_MAX:
                    return
                buf += chunk
            end = buf.index(b'\r\n\r\n') + 4
            head, buf = buf[:end], buf[end:]
            n = _content_length(head)
            if n is None:
                return
            while len(buf) < n:
                chunk = await self.cr.read(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[n:]
            self.p._count('throttled_requests')
            if self.p.mode != 'throttle':
                return  # the next request may go through: reconnect
            self.cw.write(_throttle_reply(head, self.p.params))
            await self.cw.drain()

    async def _relay(self):
        try:
            self.ur, self.uw = await asyncio.open_connection(
                '127.0.0.1', self.p.upstream_port)
        except OSError:
            self.p._count('upstream_failures')
            return
        up = asyncio.ensure_future(self._pump(self.cr, self.uw, False))
        down = asyncio.ensure_future(self._pump(self.ur, self.cw, True))
        done, pending = await asyncio.wait(
            [up, down], return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for t in done:
            t.exception()  # retrieved: a reset is not worth a warning

    async def _pump(self, reader, writer, response):
        """Copies one direction, applying the mode to each chunk."""
        while True:
            chunk = await reader.read(65536)
            if not chunk or self.closed:
                return
            self.p._count('bytes_down' if response else 'bytes_up',
                          len(chunk))
            mode, par = self.p.mode, self.p.params
            if not response:
                self.resp_bytes = 0  # a request: a new response follows
            if mode == 'blackhole':
                continue
            if mode in _CUT_MODES:
                self.close(rst=(mode == 'reset'))
                return
            if mode == 'latency':
                await asyncio.sleep(par.get('ms', 0) / 1000.0)
            cut = False
            if response and mode == 'truncate':
                left = max(0, par.get('k', 0) - self.resp_bytes)
                if len(chunk) > left:
                    chunk, cut = chunk[:left], True
                    self.p._count('truncated')
            if response and mode == 'garble' and \
                    self.p.rng.random() < par.get('rate', 1.0):
                chunk = self._garble(chunk)
                self.p._count('garbled')
            if response:
                self.resp_bytes += len(chunk)
            if chunk:
                writer.write(chunk)
                await writer.drain()
            if cut:
                self.close()
                return

    def _garble(self, chunk):
        # Anywhere (status line, headers, body), and always near the end,
        # where a short reply's body is.
        b = bytearray(chunk)
        rng = self.p.rng
        spots = [rng.randrange(len(b)) for _ in range(max(1, len(b) // 64))]
        spots.append(rng.randrange(max(0, len(b) - 16), len(b)))
        for i in spots:
            b[i] = rng.choice(b'\x00{}"<>\xff\x80 ')
        return bytes(b)


class FaultProxy:
    """The proxy. start() returns once it listens; stop() ends it."""

    def __init__(self, upstream_port, mode='pass', seed=None, **params):
        self.upstream_port = upstream_port
        self.mode = mode
        self.params = dict(params)
        self.port = None
        self.rng = random.Random(seed)
        self._conns = set()
        self._stats = {}
        self._lock = threading.Lock()
        self._loop = None
        self._server = None
        self._thread = None
        self.reset_stats()

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def _count(self, key, n=1):
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + n

    def stats(self):
        with self._lock:
            return dict(self._stats)

    def reset_stats(self):
        with self._lock:
            self._stats = {k: 0 for k in (
                'connections', 'upstream_failures', 'bytes_up',
                'bytes_down', 'truncated', 'garbled',
                'throttled_requests')}

    def start(self, port=0):
        ready = threading.Event()
        box = {}

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(
                    self._accept, '127.0.0.1', port, reuse_address=True))
                self.port = self._server.sockets[0].getsockname()[1]
            except OSError as e:
                box['error'] = e
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True,
                                        name='faultproxy')
        self._thread.start()
        ready.wait(10)
        if 'error' in box or self.port is None:
            raise RuntimeError('faultproxy: cannot listen: %s'
                               % box.get('error'))
        return self

    async def _accept(self, reader, writer):
        self._count('connections')
        c = _Conn(self, reader, writer)
        self._conns.add(c)
        await c.run()

    def set_mode(self, mode, **params):
        """Switches mode (see the module doc); thread-safe, takes effect
        for the next chunk of open connections and every new one."""
        if mode not in MODES:
            raise ValueError('unknown mode %r' % mode)
        done = threading.Event()

        def apply():
            self.mode, self.params = mode, dict(params)
            if mode in _CUT_MODES:
                for c in list(self._conns):
                    c.close(rst=(mode == 'reset'))
            done.set()

        self._loop.call_soon_threadsafe(apply)
        done.wait(5)

    def stop(self):
        if self._loop is None:
            return

        def shut():
            self._server.close()
            for c in list(self._conns):
                c.close(rst=True)
            for t in asyncio.all_tasks(self._loop):
                t.cancel()
            self._loop.call_later(0.05, self._loop.stop)

        self._loop.call_soon_threadsafe(shut)
        self._thread.join(5)
        self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _parse_value(v):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    p = FaultProxy(int(argv[1]), argv[2] if len(argv) > 2 else 'pass')
    p.start()
    print('faultproxy listening url=%s' % p.url, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == 'quit':
            break
        if words[0] == 'stats':
            print(json.dumps(p.stats()), flush=True)
            continue
        try:
            params = dict(w.split('=', 1) for w in words[1:])
            p.set_mode(words[0], **{k: _parse_value(v)
                                    for k, v in params.items()})
            print('ok %s' % words[0], flush=True)
        except ValueError as e:
            print('error %s' % e, flush=True)
    p.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
