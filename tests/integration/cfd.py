"""Shared helpers for the chatfanoutd integration tests.

- Daemon: starts the real daemon on 127.0.0.1 port 0, reads the URL from
  its `listening url=...` log line, kills it by PID at the end.
- http(): a raw-socket HTTP/1.1 client (one request, Connection: close).
- RawWS: a small WebSocket client written from RFC 6455, independent of
  the daemon's code and of any library, able to send broken frames.
- parse_metrics(): a strict reader of the Prometheus text format.
- Checks: records named pass/fail results so one run reports every
  deviation instead of stopping at the first.
- run(): runs a test's main with a hard time limit and exit codes meson
  understands (0 pass, 1 fail, 77 skip).

Every test takes the daemon path as its first argument (or CHATFANOUTD).

CF_DAEMON_WRAPPER (e.g. "valgrind --error-exitcode=99 --leak-check=full")
runs every Daemon under that command. A valgrind wrapper gets a
--log-file per daemon; run() fails the test when any of them reports an
error, and kill() ends a wrapped daemon with SIGTERM first so that leaks
are checked at its exit. CF_SLOW (a factor, default 1; set by
scripts/test with the wrapper) stretches the start timeout and run()'s
time limit; tests with timing assertions may read SLOW too.
"""
import base64
import hashlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77
WRAPPER = shlex.split(os.environ.get('CF_DAEMON_WRAPPER', ''))
SLOW = max(1.0, float(os.environ.get('CF_SLOW', '1') or 1))
_VG_DIR = None
WS_GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


class TestTimeout(Exception):
    pass


def skip(why):
    """Exits 77 (meson: skipped), or 1 when the runner forbids skips."""
    if os.environ.get('CF_TEST_NO_SKIP'):
        print('FAIL (skips not allowed): ' + why, file=sys.stderr)
        sys.exit(1)
    print('SKIP: ' + why)
    sys.exit(SKIP)


def require_websockets():
    """Returns the websockets module (Debian python3-websockets)."""
    try:
        import websockets
        import websockets.client  # noqa: F401
        import websockets.exceptions  # noqa: F401
    except ImportError:
        skip('python module websockets missing (apt install '
             'python3-websockets; run with /usr/bin/python3)')
    return websockets


def daemon_path():
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get('CHATFANOUTD')
    if not path:
        skip('no daemon given: pass the chatfanoutd path as argument')
    if not os.access(path, os.X_OK):
        print('daemon not executable: %s' % path, file=sys.stderr)
        sys.exit(1)
    return path


def log(*args):
    print(*args, flush=True)


def wrapped():
    """True when daemons run under CF_DAEMON_WRAPPER."""
    return bool(WRAPPER)


def skip_if_wrapped(why):
    """Skips a test unsuitable under a wrapper (exit 77, even with
    CF_TEST_NO_SKIP: the wrapped stage names what it skips)."""
    if WRAPPER:
        print('SKIP under %s: %s' % (os.path.basename(WRAPPER[0]), why))
        sys.exit(SKIP)


def _wrapper_args(tag):
    global _VG_DIR
    if not WRAPPER:
        return [], None
    if os.path.basename(WRAPPER[0]) != 'valgrind':
        return list(WRAPPER), None
    if _VG_DIR is None:
        _VG_DIR = tempfile.mkdtemp(prefix='cf-valgrind-')
    path = os.path.join(_VG_DIR, '%s-%d.log' % (
        re.sub(r'[^A-Za-z0-9_.-]', '_', tag), len(_started)))
    return list(WRAPPER) + ['--log-file=' + path], path


_VG_ERRORS = re.compile(r'ERROR SUMMARY: (\d+) errors')
_VG_REPORT = re.compile(r'^==\d+== (Invalid (read|write|free)|Conditional '
                        r'jump|Use of uninitialised|Syscall param|Mismatched '
                        r'free|Source and destination overlap|Invalid '
                        r'(argument|size))', re.M)


def wrapper_verdict():
    """Lists the valgrind logs that report errors; returns 1 if any."""
    bad = 0
    for d in _started:
        if not d.vg_log:
            continue
        try:
            with open(d.vg_log, errors='replace') as f:
                text = f.read()
        except OSError:
            continue
        counts = [int(n) for n in _VG_ERRORS.findall(text)]
        rc = d.proc.returncode if d.proc is not None else None
        if any(counts) or _VG_REPORT.search(text) or rc == 99:
            bad = 1
            print('VALGRIND: %s (exit %s) reported errors, log %s:\n%s' % (
                d.tag, rc, d.vg_log, text[-6000:]), flush=True)
        else:
            log('valgrind: %s clean (%s)' % (
                d.tag, 'summary' if counts else 'no summary: killed'))
    if not bad and _VG_DIR is not None:
        shutil.rmtree(_VG_DIR, ignore_errors=True)
    return bad


# --- the daemon ---------------------------------------------------------

_LISTEN_TEXT = re.compile(r'listening\b.*\burl=(\S+)')
_started = []


class Daemon:
    """One chatfanoutd process. Use as a context manager."""

    def __init__(self, *args, env=None, listen='127.0.0.1:0', tag='daemon'):
        self.tag = tag
        pre, self.vg_log = _wrapper_args(tag)
        self.args = pre + [daemon_path()] + (['--listen', listen] if listen
                                             else []) + list(args)
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        self.proc = None
        self.url = None
        self.host = None
        self.port = None
        self.lines = []
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def start(self, timeout=10.0):
        timeout *= SLOW
        log('[%s] start: %s' % (self.tag, ' '.join(self.args)))
        self.proc = subprocess.Popen(self.args, env=self.env,
                                     stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        _started.append(self)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(timeout) or self.url is None:
            self.kill()
            raise RuntimeError('[%s] no "listening url=" line within %ss; '
                               'log:\n%s' % (self.tag, timeout,
                                            ''.join(self.lines[-30:])))
        m = re.match(r'^http://([^/:]+|\[[^\]]+\]):(\d+)/$', self.url)
        if not m:
            self.kill()
            raise RuntimeError('bad listening url %r' % self.url)
        self.host, self.port = m.group(1), int(m.group(2))
        if self.port == 0:
            raise RuntimeError('listening url still has port 0')
        return self

    def _drain(self):
        for raw in iter(self.proc.stderr.readline, b''):
            line = raw.decode('utf-8', 'replace')
            with self._lock:
                self.lines.append(line)
            sys.stderr.write('[%s] %s' % (self.tag, line))
            if self.url is None:
                url = parse_listening(line)
                if url:
                    self.url = url
                    self._ready.set()
        self._ready.set()

    @property
    def addr(self):
        return (self.host, self.port)

    @property
    def ws_base(self):
        return 'ws://%s:%d' % (self.host, self.port)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        with self._lock:
            return ''.join(self.lines)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Returns the exit status, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            if WRAPPER:
                # Let the wrapper see the exit (leaks); then no mercy.
                os.kill(self.proc.pid, signal.SIGTERM)
                if self.wait(30) is not None:
                    return
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()


def parse_listening(line):
    """The URL of a `listening` log line, text or JSON; None otherwise."""
    s = line.strip()
    if s.startswith('{'):
        try:
            obj = json.loads(s)
        except ValueError:
            return None
        if isinstance(obj, dict) and obj.get('msg') == 'listening':
            return obj.get('url')
        return None
    m = _LISTEN_TEXT.search(s)
    return m.group(1).strip('"') if m else None


def _cleanup():
    for d in _started:
        try:
            d.kill()
        except Exception:
            pass


def run(main, timeout=60):
    """Runs main() (returns 0/None on success) within timeout seconds."""
    def on_alarm(signum, frame):
        raise TestTimeout('test did not finish within %ss' % timeout)

    timeout = int(timeout * SLOW)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    rc = 1
    try:
        rc = main() or 0
    except SystemExit as e:
        rc = e.code
    except BaseException:
        traceback.print_exc()
        rc = 1
    finally:
        signal.alarm(0)
        _cleanup()
    if WRAPPER and wrapper_verdict() and rc in (0, None):
        rc = 1
    sys.stdout.flush()
    sys.exit(rc)


class Checks:
    """Named checks; all are run, failures are listed at the end."""

    def __init__(self):
        self.passed = 0
        self.failed = []
        self.todo_failed = []

    def ok(self, cond, name, detail=''):
        if cond:
            self.passed += 1
            log('ok - %s' % name)
        else:
            self.failed.append((name, detail))
            log('not ok - %s%s' % (name, (': ' + str(detail)) if detail
                                   else ''))
        return bool(cond)

    def todo(self, cond, name, detail=''):
        """A check of a known, reported deviation from the README: logged
        (TAP '# TODO') but not failing the run until the daemon is fixed;
        then the marker should go."""
        if cond:
            log('ok - %s # TODO passes now: make it a plain check' % name)
        else:
            self.todo_failed.append((name, detail))
            log('not ok - %s: %s # TODO known deviation' % (name, detail))
        return bool(cond)

    def eq(self, got, want, name):
        return self.ok(got == want, name, 'got %r, want %r' % (got, want))

    def result(self):
        for name, detail in self.todo_failed:
            log('KNOWN DEVIATION: %s: %s' % (name, detail))
        log('%d passed, %d failed' % (self.passed, len(self.failed)))
        for name, detail in self.failed:
            log('FAILED: %s%s' % (name, (': ' + str(detail)) if detail
                                  else ''))
        return 1 if self.failed else 0


# --- raw HTTP -------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body, raw):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> list of values
        self.body = body
        self.raw = raw

    def header(self, name):
        vals = self.headers.get(name.lower())
        return vals[0] if vals else None

    def __repr__(self):
        return '<HTTP %s %r>' % (self.status, self.raw[:200])


def parse_head(data):
    """Parses a response head; returns (Response without body, rest)."""
    end = data.find(b'\r\n\r\n')
    if end < 0:
        raise ValueError('incomplete response head: %r' % data[:300])
    lines = data[:end].decode('latin-1').split('\r\n')
    m = re.match(r'^HTTP/1\.[01] (\d{3})(?: (.*))?$', lines[0])
    if not m:
        raise ValueError('bad status line %r' % lines[0])
    headers = {}
    for ln in lines[1:]:
        name, sep, value = ln.partition(':')
        if not sep:
            raise ValueError('bad header line %r' % ln)
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    resp = Response(int(m.group(1)), m.group(2) or '', headers, b'',
                    data[:end + 4])
    return resp, data[end + 4:]


def read_until_eof(sock, timeout, stop=None):
    """Reads until EOF or reset; returns (bytes, how) how in eof/reset/
    timeout, or 'stop' when stop(bytes) said enough."""
    deadline = time.monotonic() + timeout
    buf = b''
    while True:
        if stop is not None and stop(buf):
            return buf, 'stop'

        left = deadline - time.monotonic()
        if left <= 0:
            return buf, 'timeout'
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return buf, 'timeout'
        except ConnectionResetError:
            return buf, 'reset'
        if not chunk:
            return buf, 'eof'
        buf += chunk


def _is_101(data):
    """A complete 101 head: the connection stays open, stop reading."""
    return data.startswith(b'HTTP/1.1 101') and b'\r\n\r\n' in data


def http_raw(addr, request, timeout=5.0):
    """Sends raw request bytes; returns (Response or None, raw, how)."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, how = read_until_eof(s, timeout, _is_101)
    finally:
        s.close()
    try:
        resp, rest = parse_head(data)
    except ValueError:
        return None, data, how
    resp.body = rest
    return resp, data, how


def http(addr, method, path, headers=None, body=b'', timeout=5.0):
    """One HTTP/1.1 request with Connection: close; returns Response."""
    hdrs = {'Host': '%s:%d' % addr, 'Connection': 'close'}
    hdrs.update(headers or {})
    if body:
        hdrs['Content-Length'] = str(len(body))
    req = '%s %s HTTP/1.1\r\n' % (method, path)
    req += ''.join('%s: %s\r\n' % kv for kv in hdrs.items()) + '\r\n'
    resp, raw, how = http_raw(addr, req.encode('latin-1') + body, timeout)
    if resp is None:
        raise RuntimeError('no HTTP answer to %s %s (%s): %r' %
                           (method, path, how, raw[:200]))
    return resp


# --- raw WebSocket ----------------------------------------------------------

class HandshakeError(Exception):
    def __init__(self, msg, resp=None):
        Exception.__init__(self, msg)
        self.resp = resp


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(
        hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def upgrade_request(addr, path, key=None, extra=None, drop=(),
                    version='HTTP/1.1'):
    """Builds an upgrade request; extra adds/overrides, drop removes."""
    hdrs = {
        'Host': '%s:%d' % addr,
        'Upgrade': 'websocket',
        'Connection': 'Upgrade',
        'Sec-WebSocket-Key': key or ws_key(),
        'Sec-WebSocket-Version': '13',
    }
    hdrs.update(extra or {})
    for d in drop:
        hdrs.pop(d, None)
    req = 'GET %s %s\r\n' % (path, version)
    req += ''.join('%s: %s\r\n' % kv for kv in hdrs.items()) + '\r\n'
    return req.encode('latin-1'), hdrs.get('Sec-WebSocket-Key')


def encode_frame(opcode, payload=b'', fin=True, rsv=0, mask=True,
                 length=None, len_bytes=None, mask_key=None):
    """A client frame; length overrides the declared payload length,
    len_bytes forces its encoding (0: 7-bit, 2: 16-bit, 8: 64-bit, even
    when not the shortest), mask_key fixes the 4-byte masking key."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if len_bytes is None:
        len_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    if len_bytes == 0:
        head = struct.pack('!BB', b0, mbit | n)
    elif len_bytes == 2:
        head = struct.pack('!BBH', b0, mbit | 126, n)
    else:
        head = struct.pack('!BBQ', b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + masked


class Frame:
    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, \
            payload

    def close_code(self):
        if len(self.payload) >= 2:
            return struct.unpack('!H', self.payload[:2])[0]
        return None

    def close_reason(self):
        return self.payload[2:].decode('utf-8', 'replace')

    def __repr__(self):
        return '<Frame op=%d fin=%d len=%d>' % (self.opcode, self.fin,
                                               len(self.payload))


class Closed(Exception):
    """The peer ended the TCP connection (how: eof or reset)."""

    def __init__(self, how):
        Exception.__init__(self, how)
        self.how = how


class RawWS:
    def __init__(self, sock, rest):
        self.sock = sock
        self.buf = rest
        self.masked_server_frame = False

    @classmethod
    def connect(cls, addr, path='/ws?room=lobby', extra=None, rcvbuf=None,
                timeout=5.0, early=b''):
        """Opens a WebSocket; raises HandshakeError unless it got 101 with
        a correct Sec-WebSocket-Accept. early: bytes (frames) sent in the
        same write as the request, before the 101."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(addr)
        req, key = upgrade_request(addr, path, extra=extra)
        s.sendall(req + early)
        data = b''
        deadline = time.monotonic() + timeout
        while b'\r\n\r\n' not in data:
            if time.monotonic() > deadline:
                s.close()
                raise HandshakeError('handshake timeout: %r' % data[:200])
            try:
                chunk = s.recv(4096)
            except (socket.timeout, ConnectionResetError) as e:
                s.close()
                raise HandshakeError('handshake failed: %s %r' % (e, data))
            if not chunk:
                s.close()
                raise HandshakeError('closed during handshake: %r' % data)
            data += chunk
        resp, rest = parse_head(data)
        if resp.status != 101:
            s.close()
            raise HandshakeError('status %d' % resp.status, resp)
        problems = []
        if (resp.header('upgrade') or '').lower() != 'websocket':
            problems.append('Upgrade: %r' % resp.header('upgrade'))
        if 'upgrade' not in (resp.header('connection') or '').lower():
            problems.append('Connection: %r' % resp.header('connection'))
        if resp.header('sec-websocket-accept') != ws_accept(key):
            problems.append('bad Sec-WebSocket-Accept')
        if problems:
            s.close()
            raise HandshakeError('bad 101: ' + ', '.join(problems), resp)
        return cls(s, rest)

    def fileno(self):
        return self.sock.fileno()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b'', **kw):
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def send_text(self, text):
        if isinstance(text, str):
            text = text.encode('utf-8')
        self.send_frame(OP_TEXT, text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_close(self, code=1000, reason=b''):
        self.send_frame(OP_CLOSE, struct.pack('!H', code) + reason)

    def _fill(self, need, deadline):
        while len(self.buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout('frame read timeout')
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                raise Closed('reset')
            if not chunk:
                raise Closed('eof')
            self.buf += chunk

    def recv_frame(self, timeout=5.0):
        """Next frame; raises socket.timeout or Closed."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack('!H', self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack('!Q', self.buf[2:10])[0]
            pos = 10
        if b1 & 0x80:
            self.masked_server_frame = True
            self._fill(pos + 4, deadline)
            key = self.buf[pos:pos + 4]
            pos += 4
        else:
            key = None
        self._fill(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        if key:
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload)

    def recv_message(self, timeout=5.0, pong=True):
        """Next data message as (opcode, payload), answering pings; a close
        frame is returned as (OP_CLOSE, frame)."""
        deadline = time.monotonic() + timeout
        parts, first = [], None
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                if pong:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                return OP_CLOSE, f
            if first is None:
                first = f.opcode
            parts.append(f.payload)
            if f.fin:
                return first, b''.join(parts)

    def expect_close(self, timeout=5.0):
        """Reads (and drops) data until a close frame; returns (code,
        reason, how) where how is 'close', 'eof', 'reset' or 'timeout'."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except Closed as e:
                return None, None, e.how
            except socket.timeout:
                return None, None, 'timeout'
            if f.opcode == OP_CLOSE:
                return f.close_code(), f.close_reason(), 'close'

    def wait_eof(self, timeout=3.0):
        """After a close: True when the server ends the TCP connection."""
        try:
            while True:
                self.recv_frame(timeout)
        except Closed:
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def readable(sock, timeout):
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


# --- Prometheus text format --------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?'
                     r'[ \t]+(\S+)(?:[ \t]+-?\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"'
                    r'\s*(,|$)')
_TYPES = ('counter', 'gauge', 'histogram', 'summary', 'untyped')


class Metrics:
    def __init__(self):
        self.types = {}     # family -> type
        self.samples = {}   # (name, frozenset(labels)) -> float

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, default=0.0, **labels):
        v = self.get(name, **labels)
        return default if v is None else v

    def series(self, name):
        """[(labels dict, value)] for every sample called name."""
        return [(dict(k[1]), v) for k, v in self.samples.items()
                if k[0] == name]


def _parse_labels(s):
    labels = {}
    pos = 0
    s = s.strip()
    while pos < len(s):
        m = _LABEL.match(s, pos)
        if not m:
            raise ValueError('bad labels {%s}' % s)
        if m.group(1) in labels:
            raise ValueError('duplicate label %s' % m.group(1))
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_metrics(text):
    """Parses Prometheus text exposition (0.0.4); raises ValueError with
    the offending line on any format error."""
    m = Metrics()
    for ln in text.split('\n'):
        if not ln.strip():
            continue
        if ln.startswith('#'):
            parts = ln.split(None, 3)
            if len(parts) >= 2 and parts[1] == 'TYPE':
                if len(parts) != 4 or parts[3].strip() not in _TYPES:
                    raise ValueError('bad TYPE line %r' % ln)
                if parts[2] in m.types:
                    raise ValueError('TYPE given twice: %r' % ln)
                m.types[parts[2]] = parts[3].strip()
            continue
        sm = _SAMPLE.match(ln)
        if not sm:
            raise ValueError('bad sample line %r' % ln)
        labels = _parse_labels(sm.group(2) or '')
        v = sm.group(3)
        try:
            val = float(v)
        except ValueError:
            raise ValueError('bad value in %r' % ln)
        key = (sm.group(1), frozenset(labels.items()))
        if key in m.samples:
            raise ValueError('duplicate sample %r' % ln)
        m.samples[key] = val
    for name, _ in m.samples:
        fam = name
        for suf in ('_bucket', '_sum', '_count'):
            if name.endswith(suf) and name[:-len(suf)] in m.types:
                fam = name[:-len(suf)]
        if fam not in m.types:
            raise ValueError('sample %s has no # TYPE line' % name)
    return m


def fetch_metrics(addr):
    r = http(addr, 'GET', '/metrics')
    if r.status != 200:
        raise RuntimeError('/metrics answered %d' % r.status)
    return parse_metrics(r.body.decode('utf-8'))


def wait_for(pred, timeout, step=0.05):
    """Polls pred() until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)
