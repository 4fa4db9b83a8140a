"""Command line and environment: bad values exit 2 naming the option,
--help and --version, flags over environment, the JSON log format.

Usage: test_cli.py CHATFANOUTD [VERSION]
"""
import json
import socket
import subprocess
import sys
import time

import cfd

chk = cfd.Checks()


def run(args, env=None):
    e = {'PATH': '/usr/bin:/bin'}
    e.update(env or {})
    try:
        p = subprocess.run([cfd.daemon_path()] + args, env=e, timeout=5,
                           stdin=subprocess.DEVNULL, capture_output=True)
    except subprocess.TimeoutExpired as t:
        # run() killed it; a daemon that accepted the value is serving.
        return 'still running', (t.stdout or b'').decode(errors='replace'), \
            (t.stderr or b'').decode(errors='replace')
    return p.returncode, p.stdout.decode(errors='replace'), \
        p.stderr.decode(errors='replace')


def bad_values():
    cases = [
        (['--history', 'abc'], None, 'history'),
        (['--history', '-1'], None, 'history'),
        (['--ping-interval', '5x'], None, 'ping-interval'),
        (['--idle-timeout', 'soon'], None, 'idle-timeout'),
        (['--max-message-size', '12Q'], None, 'max-message-size'),
        (['--client-buffer', ''], None, 'client-buffer'),
        (['--max-connections', 'lots'], None, 'max-connections'),
        (['--listen', 'not-an-address'], None, 'listen'),
        (['--log-level', 'loud'], None, 'log-level'),
        (['--log-format', 'xml'], None, 'log-format'),
        (['--queue', 'nosuch'], None, 'queue'),
        (['--no-such-flag'], None, 'no-such-flag'),
        ([], {'CHATFANOUT_HISTORY': 'abc'}, 'history'),
        ([], {'CHATFANOUT_HEADER_TIMEOUT': '1h'}, 'header'),
    ]
    for args, env, word in cases:
        rc, out, err = run(args + ['--listen', '127.0.0.1:0'], env)
        chk.ok(rc == 2 and word in (out + err).lower(),
               'bad value %s %s exits 2 naming %r' % (args, env or '', word),
               'status %r, said %r' % (rc, (err or out)[:160]))


def help_version(version):
    rc, out, err = run(['--help'])
    chk.ok(rc == 0 and '--listen' in out + err and
           '--max-message-size' in out + err,
           '--help exits 0 and lists the options', 'status %r' % rc)
    rc, out, err = run(['--version'])
    chk.ok(rc == 0 and (version or '.') in out + err,
           '--version exits 0 and prints %s' % version,
           'status %r, said %r' % (rc, (out + err)[:80]))


def environment():
    with cfd.Daemon(listen=None, env={'CHATFANOUT_LISTEN': '127.0.0.1:0'},
                    tag='env-listen') as d:
        chk.ok(d.port > 0, 'CHATFANOUT_LISTEN is used without --listen')
    with cfd.Daemon('--log-format', 'json', tag='json') as d:
        cfd.http(d.addr, 'GET', '/nope')
        d.kill()
        lines = [ln for ln in d.log_text().splitlines() if ln.strip()]
        bad = []
        for ln in lines:
            try:
                if not isinstance(json.loads(ln), dict):
                    bad.append(ln)
            except ValueError:
                bad.append(ln)
        chk.ok(lines and not bad, '--log-format json: every line is a JSON '
               'object', bad[:2])
        chk.ok(any('"listening"' in ln and d.url in ln for ln in lines),
               '--log-format json: {"msg":"listening","url":...}')
    with cfd.Daemon('--log-format', 'text',
                    env={'CHATFANOUT_LOG_FORMAT': 'json'},
                    tag='flag-wins') as d:
        first = d.log_text().splitlines()
        listening = [ln for ln in first if 'listening' in ln]
        chk.ok(listening and not listening[0].lstrip().startswith('{'),
               'a flag overrides its environment variable', listening[:1])


def units():
    """Sizes: k/K/KiB, m/M/MiB (binary); durations: s, ms, bare seconds."""
    for flag, val in (('--max-message-size', '2k'),
                      ('--max-message-size', '2K'),
                      ('--max-message-size', '2KiB'),
                      ('--client-buffer', '1m'), ('--client-buffer', '1M'),
                      ('--client-buffer', '1MiB'),
                      ('--ping-interval', '1500ms'),
                      ('--idle-timeout', '90s'), ('--idle-timeout', '90')):
        try:
            with cfd.Daemon(flag, val, tag='unit') as d:
                up = d.alive()
        except RuntimeError:
            up = False
        chk.ok(up, '%s %s is accepted' % (flag, val))
    with cfd.Daemon('--max-message-size', '2k', '--header-timeout', '1',
                    tag='units') as d:
        c = cfd.RawWS.connect(d.addr, '/ws?room=u')
        c.send_binary(b'x' * 2048)
        chk.eq(c.recv_message(3), (cfd.OP_BINARY, b'x' * 2048),
               '--max-message-size 2k lets 2048 bytes through')
        c.send_binary(b'x' * 2049)
        code, reason, how = c.expect_close(3)
        chk.eq(code, 1009, '--max-message-size 2k: 2049 bytes get 1009')
        c.close()
        s = socket.create_connection(d.addr)
        t0 = time.monotonic()
        s.sendall(b'GET / HTTP/1.1\r\n')
        data, how = cfd.read_until_eof(s, 4)
        dt = time.monotonic() - t0
        s.close()
        chk.ok(data.startswith(b'HTTP/1.1 408') and 0.8 <= dt <= 2.5,
               '--header-timeout 1 (bare number) means one second',
               '%.2fs: %r' % (dt, data[:20]))


def main():
    version = sys.argv[2] if len(sys.argv) > 2 else None
    bad_values()
    help_version(version)
    environment()
    units()
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=60)
