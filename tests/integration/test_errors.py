"""Every row of the README's error table, over raw sockets.

Each bad input must get its documented HTTP status or WebSocket close
code, while a bystander pair of clients in one room keeps chatting (a
message round-trips after every case) and the daemon stays up.

Usage: test_errors.py CHATFANOUTD
"""
import base64
import itertools
import os
import re
import socket
import time

import cfd
from cfd import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT

MAX_MSG = 1024
HEADER_TIMEOUT = 0.5

chk = cfd.Checks()
_seq = itertools.count()


class Bystanders:
    """Two clients in one room; roundtrip() proves both still work."""

    def __init__(self, d):
        self.d = d
        room = '/ws?room=bystanders'
        self.a = cfd.RawWS.connect(d.addr, room)
        self.b = cfd.RawWS.connect(d.addr, room)

    def roundtrip(self):
        text = 'still here %d' % next(_seq)
        try:
            self.a.send_text(text)
            got = [c.recv_message(3.0) for c in (self.a, self.b)]
        except Exception as e:
            return False, 'bystanders broken: %r' % e
        want = (OP_TEXT, text.encode())
        if got != [want, want]:
            return False, 'bystanders got %r' % got
        return True, ''

    def close(self):
        for c in (self.a, self.b):
            c.send_close(1000)
            c.close()


def after(d, by, name):
    """The invariants checked after every case."""
    if by is not None:
        ok, detail = by.roundtrip()
        chk.ok(ok, '  ... bystanders still chat after: ' + name, detail)
    chk.ok(d.alive(), '  ... daemon alive after: ' + name)


# --- HTTP cases ---------------------------------------------------------------

def http_case(d, by, name, req, status, check=None):
    if callable(req):
        req = req(d)
    resp, raw, how = cfd.http_raw(d.addr, req, timeout=5.0)
    if resp is None:
        chk.ok(False, name, 'no HTTP answer (%s): %r' % (how, raw[:120]))
    else:
        extra = check(resp) if check else ''
        chk.ok(resp.status == status and not extra, name,
               'got %d %s%s' % (resp.status, resp.reason,
                                ('; ' + extra) if extra else ''))
        if resp.status == status and status != 101:
            conn = (resp.header('connection') or '').lower()
            chk.ok('close' in conn and how == 'eof',
                   '  ... %d carries Connection: close and closes' % status,
                   'Connection: %r, ended by %s' % (conn, how))
    after(d, by, name)


def up(d, path='/ws?room=x', **kw):
    return cfd.upgrade_request(d.addr, path, **kw)[0]


def b64(n):
    return base64.b64encode(os.urandom(n)).decode()


def has_header(name, want):
    def check(resp):
        v = resp.header(name)
        if v is None or v.replace(' ', '').lower() != want.lower():
            return '%s: %r, want %r' % (name, v, want)
        return ''
    return check


def allow_check(resp):
    v = resp.header('allow') or ''
    got = {m.strip().upper() for m in v.split(',') if m.strip()}
    return '' if got == {'GET', 'HEAD'} else 'Allow: %r' % v


def http_cases(d, by):
    H = 'Host: 127.0.0.1\r\n'
    http_case(d, by, '404 for an unknown path',
              b'GET /nope HTTP/1.1\r\n' + H.encode() + b'\r\n', 404)
    http_case(d, by, '404 for /ws/extra',
              b'GET /ws/extra HTTP/1.1\r\n' + H.encode() + b'\r\n', 404)
    for meth, path in (('POST', '/'), ('PUT', '/healthz'),
                       ('DELETE', '/metrics'), ('POST', '/ws')):
        req = ('%s %s HTTP/1.1\r\n%sContent-Length: 2\r\n\r\nhi'
               % (meth, path, H)).encode()
        http_case(d, by, '405 with Allow: GET, HEAD for %s %s'
                  % (meth, path), req, 405, allow_check)
    http_case(d, by, '426 with Upgrade: websocket for a plain GET /ws',
              b'GET /ws?room=x HTTP/1.1\r\n' + H.encode() + b'\r\n', 426,
              has_header('upgrade', 'websocket'))
    http_case(d, by, '426 for GET /ws with Connection: Upgrade, no Upgrade',
              lambda d: up(d, drop=('Upgrade',)), 426,
              has_header('upgrade', 'websocket'))
    http_case(d, by, '426 for Upgrade: h2c',
              lambda d: up(d, extra={'Upgrade': 'h2c'}), 426,
              has_header('upgrade', 'websocket'))
    http_case(d, by, '400 without Connection: Upgrade',
              lambda d: up(d, drop=('Connection',)), 400)
    http_case(d, by, '400 for Connection: keep-alive',
              lambda d: up(d, extra={'Connection': 'keep-alive'}), 400)
    http_case(d, by, '400 without Sec-WebSocket-Key',
              lambda d: up(d, drop=('Sec-WebSocket-Key',)), 400)
    for n in (15, 17):
        http_case(d, by, '400 for a Sec-WebSocket-Key of %d bytes' % n,
                  lambda d, n=n: up(d, key=b64(n)), 400)
    http_case(d, by, '400 for a Sec-WebSocket-Key that is not base64',
              lambda d: up(d, key='!!!!!!!!!!!!!!!!!!!!!!=='), 400)
    http_case(d, by, '400 + Sec-WebSocket-Version: 13 for version 8',
              lambda d: up(d, extra={'Sec-WebSocket-Version': '8'}), 400,
              has_header('sec-websocket-version', '13'))
    http_case(d, by, '400 without Sec-WebSocket-Version',
              lambda d: up(d, drop=('Sec-WebSocket-Version',)), 400)
    http_case(d, by, '400 for an HTTP/1.0 upgrade',
              lambda d: up(d, version='HTTP/1.0'), 400)
    for room in ('a' * 65, 'a%20b', 'a/b', 'caf%C3%A9', 'x%00y'):
        http_case(d, by, '400 for bad room %r' % room[:20],
                  lambda d, r=room: up(d, '/ws?room=' + r), 400)
    for req in (b'GARBAGE\r\n\r\n',
                b'GET /\r\n\r\n',
                b'GET / HTTP/1.1\r\nNoColonHere\r\n\r\n',
                b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'):
        http_case(d, by, '400 for malformed request %r' % req[:24],
                  req, 400)
    http_case(d, by, '414 for a request line over 8 KiB',
              b'GET /' + b'a' * 9000 + b' HTTP/1.1\r\n' + H.encode() +
              b'\r\n', 414)
    many = ''.join('X-H%d: v\r\n' % i for i in range(70))
    http_case(d, by, '431 for more than 64 headers',
              ('GET / HTTP/1.1\r\n' + H + many + '\r\n').encode(), 431)
    http_case(d, by, '431 for a head over 8 KiB',
              ('GET / HTTP/1.1\r\n' + H + 'X-Big: ' + 'b' * 9000 +
               '\r\n\r\n').encode(), 431)
    http_case(d, by, '64 headers are still fine',
              ('GET /healthz HTTP/1.1\r\n' + H +
               ''.join('X-H%d: v\r\n' % i for i in range(63)) +
               '\r\n').encode(), 200)
    http_case(d, by, 'upgrade with "Connection: keep-alive, Upgrade" and '
              'lower-case names/values is accepted (RFC 6455 4.2.1)',
              lambda d: up(d, extra={'Connection': 'keep-alive, Upgrade',
                                     'Upgrade': 'WebSocket'}), 101)
    for room in ('A' * 64, 'Az09_.-'):
        http_case(d, by, 'room %r is valid' % room[:20],
                  lambda d, r=room: up(d, '/ws?room=' + r), 101)
    timeout_cases(d, by)


def timeout_cases(d, by):
    # A partial head, then silence: 408 once --header-timeout ran out.
    s = socket.create_connection(d.addr)
    t0 = time.monotonic()
    s.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n')
    data, how = cfd.read_until_eof(s, 5)
    dt = time.monotonic() - t0
    s.close()
    chk.ok(data.startswith(b'HTTP/1.1 408') and how == 'eof' and
           HEADER_TIMEOUT * 0.8 <= dt <= HEADER_TIMEOUT + 2,
           '408 then close for an incomplete head after --header-timeout',
           'after %.2fs (%s): %r' % (dt, how, data[:40]))
    after(d, by, '408')
    # Slowloris: a byte every 100 ms must not keep the timer from firing.
    s = socket.create_connection(d.addr)
    t0 = time.monotonic()
    req = b'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ' + b'z' * 100
    got = b''
    for byte in req:
        try:
            s.sendall(bytes([byte]))
        except OSError:
            break
        if cfd.readable(s, 0.1):
            break
    got, how = cfd.read_until_eof(s, 3)
    dt = time.monotonic() - t0
    s.close()
    chk.ok(got.startswith(b'HTTP/1.1 408') and dt <= HEADER_TIMEOUT + 2,
           '408 for a head trickled a byte at a time (slowloris)',
           'after %.2fs (%s): %r' % (dt, how, got[:40]))
    after(d, by, 'slowloris')


def origin_cases(d, by):
    same = 'http://%s:%d' % d.addr
    http_case(d, by, '403 for a foreign Origin without --allowed-origin',
              lambda d: up(d, extra={'Origin': 'http://evil.example'}), 403)
    http_case(d, by, '403 for Origin: null without --allowed-origin',
              lambda d: up(d, extra={'Origin': 'null'}), 403)
    http_case(d, by, 'same-origin Origin is allowed without '
              '--allowed-origin', lambda d: up(d, extra={'Origin': same}),
              101)


# --- WebSocket cases ----------------------------------------------------------

def ws_case(d, by, name, act, want_code):
    c = cfd.RawWS.connect(d.addr, '/ws?room=victim%d' % next(_seq))
    try:
        act(c)
    except OSError:
        pass
    code, reason, how = c.expect_close(3.0)
    try:
        c.send_close(1000)
    except OSError:
        pass
    eof = c.wait_eof(3.0)
    c.close()
    chk.ok(how == 'close' and code == want_code, name,
           'got %s %r (%s)' % (code, reason, how))
    chk.ok(eof, '  ... then the server closes the TCP connection')
    after(d, by, name)


def fragmented(parts, opcode=OP_TEXT):
    def act(c):
        for i, p in enumerate(parts):
            c.send_frame(opcode if i == 0 else OP_CONT, p,
                         fin=(i == len(parts) - 1))
    return act


def ws_cases(d, by):
    P = cfd.encode_frame
    cases = [
        ('1002 for an unmasked client frame',
         lambda c: c.send_frame(OP_TEXT, b'hi', mask=False), 1002),
        ('1002 for RSV1 set (no extension agreed)',
         lambda c: c.send_frame(OP_TEXT, b'hi', rsv=4), 1002),
        ('1002 for RSV2 set', lambda c: c.send_frame(OP_TEXT, b'hi', rsv=2),
         1002),
        ('1002 for RSV3 set', lambda c: c.send_frame(OP_TEXT, b'hi', rsv=1),
         1002),
        ('1002 for data opcode 0x3',
         lambda c: c.send_frame(0x3, b'hi'), 1002),
        ('1002 for control opcode 0xB',
         lambda c: c.send_frame(0xB, b''), 1002),
        ('1002 for a ping with 126 payload bytes',
         lambda c: c.send_frame(OP_PING, b'p' * 126), 1002),
        ('1002 for a fragmented ping',
         lambda c: c.send_frame(OP_PING, b'p', fin=False), 1002),
        ('1002 for a continuation with nothing to continue',
         lambda c: c.send_frame(OP_CONT, b'x'), 1002),
        ('1002 for a new text frame inside a fragmented message',
         lambda c: c.send_raw(P(OP_TEXT, b'a', fin=False) +
                              P(OP_TEXT, b'b')), 1002),
        ('1002 for a close frame with a 1-byte payload',
         lambda c: c.send_frame(OP_CLOSE, b'\x03'), 1002),
        ('1002 for a close frame with code 1005 (reserved)',
         lambda c: c.send_close(1005), 1002),
        ('1007 for text that is not UTF-8 (0xff)',
         lambda c: c.send_frame(OP_TEXT, b'ok \xff'), 1007),
        ('1007 for an overlong UTF-8 encoding',
         lambda c: c.send_frame(OP_TEXT, b'\xc0\xaf'), 1007),
        ('1007 for a UTF-16 surrogate in UTF-8',
         lambda c: c.send_frame(OP_TEXT, b'\xed\xa0\x80'), 1007),
        ('1007 for a truncated UTF-8 sequence at the end',
         lambda c: c.send_frame(OP_TEXT, b'euro \xe2\x82'), 1007),
        ('1007 for bad UTF-8 in a fragmented text message',
         fragmented([b'abc', b'\xff', b'def']), 1007),
        ('1009 for a text message over --max-message-size',
         lambda c: c.send_frame(OP_TEXT, b't' * (MAX_MSG + 1)), 1009),
        ('1009 for a binary message over --max-message-size',
         lambda c: c.send_frame(OP_BINARY, b'\0' * (MAX_MSG + 1)), 1009),
        ('1009 for fragments adding up to over --max-message-size',
         fragmented([b'f' * 400] * 3), 1009),
        ('1009 for a frame announcing 1 TiB (header + 64 bytes sent)',
         lambda c: c.send_raw(P(OP_BINARY, b'', length=1 << 40)[:14] +
                              b'\0' * 64), 1009),
    ]
    for name, act, code in cases:
        ws_case(d, by, name, act, code)
    ws_positive_cases(d, by)


def ws_positive_cases(d, by):
    c = cfd.RawWS.connect(d.addr, '/ws?room=pos')
    c.send_frame(OP_PING, b'are you there')
    f = c.recv_frame(3.0)
    chk.ok(f.opcode == OP_PONG and f.payload == b'are you there',
           'a client ping gets a pong with the same payload', f)
    body = 'é'.encode() * (MAX_MSG // 2)
    c.send_frame(OP_TEXT, body)
    chk.eq(c.recv_message(3.0), (OP_TEXT, body),
           'a message of exactly --max-message-size is delivered')
    euro = '€'.encode()
    fragmented([b'split ' + euro[:1], euro[1:2], euro[2:] + b'!'])(c)
    chk.eq(c.recv_message(3.0), (OP_TEXT, b'split ' + euro + b'!'),
           'UTF-8 split across fragments is fine, delivered as one message')
    c.send_raw(cfd.encode_frame(OP_TEXT, b'inter', fin=False) +
               cfd.encode_frame(OP_PING, b'mid') +
               cfd.encode_frame(OP_CONT, b'leaved'))
    got = sorted((f.opcode, f.payload) for f in (c.recv_frame(3.0),
                                                 c.recv_frame(3.0)))
    chk.eq(got, [(OP_TEXT, b'interleaved'), (OP_PONG, b'mid')],
           'a ping between fragments is answered, the message kept')
    c.send_frame(OP_TEXT, b'')
    chk.eq(c.recv_message(3.0), (OP_TEXT, b''), 'an empty message is '
           'delivered')
    c.send_close(1000, b'bye')
    code, reason, how = c.expect_close(3.0)
    chk.ok(how == 'close' and code == 1000,
           'a client close 1000 is answered with close 1000',
           (code, reason, how))
    chk.ok(c.wait_eof(3.0), '  ... then the server closes the TCP '
           'connection')
    chk.ok(not c.masked_server_frame, 'server frames are never masked')
    c.close()
    after(d, by, 'positive frame cases')


def log_cases(d):
    """'Bad input gets a precise answer and a log line'."""
    text = d.log_text()
    for code in ('400', '403', '404', '405', '408', '414', '426', '431',
                 '1002', '1007', '1009'):
        chk.ok(re.search(r'\b%s\b' % code, text),
               'the daemon logged a line for %s' % code)


def metrics_cases(d):
    m = cfd.fetch_metrics(d.addr)
    for code in ('400', '403', '404', '405', '408', '414', '426', '431'):
        chk.ok(m.value('chatfanout_http_requests_total', code=code) >= 1,
               'http_requests_total{code="%s"} counted' % code)
    for code in ('1002', '1007', '1009'):
        chk.ok(m.value('chatfanout_ws_closes_total', code=code) >= 1,
               'ws_closes_total{code="%s"} counted' % code)


# --- daemons with other options -------------------------------------------

def allowed_origin_cases():
    def try_origin(d, origin):
        req = cfd.upgrade_request(d.addr, '/ws?room=o',
                                  extra={'Origin': origin})[0]
        resp, raw, how = cfd.http_raw(d.addr, req, timeout=1.0)
        return resp.status if resp else None

    with cfd.Daemon('--allowed-origin', 'http://good.example',
                    '--allowed-origin', 'https://also.example:8443',
                    tag='origins') as d:
        for origin, want in (('http://good.example', 101),
                             ('https://also.example:8443', 101),
                             ('http://evil.example', 403),
                             ('http://good.example.evil', 403),
                             ('https://good.example', 403)):
            chk.eq(try_origin(d, origin), want,
                   '--allowed-origin x2: Origin %s' % origin)
    with cfd.Daemon(env={'CHATFANOUT_ALLOWED_ORIGIN':
                         'http://a.example,http://b.example'},
                    tag='origin-env') as d:
        for origin, want in (('http://a.example', 101),
                             ('http://b.example', 101),
                             ('http://c.example', 403)):
            chk.eq(try_origin(d, origin), want,
                   'CHATFANOUT_ALLOWED_ORIGIN list: Origin %s' % origin)
    with cfd.Daemon('--allowed-origin', '*', tag='origin-any') as d:
        chk.eq(try_origin(d, 'http://anything.example'), 101,
               '--allowed-origin "*" allows any Origin')


def connection_limit_cases():
    with cfd.Daemon('--max-connections', '4', tag='maxconn') as d:
        by = Bystanders(d)
        idle = []
        for _ in range(2):
            s = socket.create_connection(d.addr)
            s.sendall(b'GET / HTTP/1.1\r\n')
            idle.append(s)
        time.sleep(0.2)
        http_case(d, by, '503 with Retry-After: 1 at --max-connections',
                  b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 503,
                  has_header('retry-after', '1'))
        http_case(d, by, '503 for an upgrade at --max-connections',
                  lambda d: up(d), 503)
        idle.pop().close()

        def healthy():
            try:
                return cfd.http(d.addr, 'GET', '/healthz').status == 200
            except Exception:
                return False
        chk.ok(cfd.wait_for(healthy, 3), 'a freed slot is usable again')
        after(d, by, 'connection limit')
        by.close()
        for s in idle:
            s.close()


def main():
    with cfd.Daemon('--max-message-size', '1KiB',
                    '--header-timeout', '%dms' % (HEADER_TIMEOUT * 1000),
                    tag='errors') as d:
        by = Bystanders(d)
        http_cases(d, by)
        origin_cases(d, by)
        ws_cases(d, by)
        metrics_cases(d)
        log_cases(d)
        by.close()
    allowed_origin_cases()
    connection_limit_cases()
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=240)
