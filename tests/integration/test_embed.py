"""The README's embedding example, built against the installed library.

Extracts the program between <!-- example:embed begin/end --> in
README.md (it must equal examples/embed.c), installs the build with
`meson install --destdir` into a temporary directory, compiles the
program with `pkg-config --cflags --libs libchatfanout` from there, runs
it and compares its output with the one the README shows. Also checks
the installed headers, the SONAME, that only cf_ symbols are exported,
and that the daemon is installed in bin/ and runs against the
installed library.

Usage: test_embed.py --source DIR --build DIR --meson MESON --cc "CC..."
                     --version X.Y.Z [--sanitize LIST]
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import tempfile

import cfd

chk = cfd.Checks()

HEADERS = ['chatfanout.h', 'cf_common.h', 'cf_hub.h', 'cf_loop.h',
           'cf_queue.h', 'cf_version.h', 'adapters/cf_libev.h']


def readme_parts(readme):
    m = re.search(r'<!-- example:embed begin -->\n```c\n(.*?)```\n'
                  r'<!-- example:embed end -->', readme, re.S)
    prog = m.group(1) if m else None
    m = re.search(r'<!-- example:embed end -->.*?prints:\n\n```\n(.*?)```',
                  readme, re.S)
    out = m.group(1) if m else None
    return prog, out


def sh(cmd, env=None, check=True):
    cfd.log('$ ' + ' '.join(shlex.quote(c) for c in cmd))
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    out = p.stdout.decode(errors='replace')
    err = p.stderr.decode(errors='replace')
    if check and p.returncode != 0:
        raise RuntimeError('%s failed (%d):\n%s%s'
                           % (cmd[0], p.returncode, out, err))
    return p.returncode, out, err


def find(root, name):
    for dirpath, _, files in os.walk(root):
        if name in files:
            return os.path.join(dirpath, name)
    return None


def check_library(libdir):
    so = os.path.join(libdir, 'libchatfanout.so')
    _, out, _ = sh(['readelf', '-d', so])
    m = re.search(r'\(SONAME\)\s+Library soname: \[([^\]]+)\]', out)
    chk.eq(m.group(1) if m else None, 'libchatfanout.so.0',
           'SONAME is libchatfanout.so.0')
    chk.ok(os.path.realpath(so) == os.path.realpath(
        os.path.join(libdir, 'libchatfanout.so.0')),
        'libchatfanout.so -> libchatfanout.so.0 symlink chain')
    _, out, _ = sh(['nm', '-D', '--defined-only', so])
    names = [ln.split()[-1] for ln in out.splitlines() if ln.strip()]
    foreign = [n for n in names if not n.startswith('cf_')]
    chk.ok(names and not foreign,
           'only cf_ symbols are exported (%d)' % len(names), foreign[:10])
    internal = [n for n in names if n.startswith('cf__')]
    chk.eq(internal, [], 'no cf__ internal symbol is exported')


def check_daemon(dest, libdir, version):
    exe = find(dest, 'chatfanoutd')
    chk.ok(exe is not None and os.path.basename(os.path.dirname(exe)) ==
           'bin', 'chatfanoutd is installed in bin/', exe)
    if exe is None:
        return
    chk.ok(os.access(exe, os.X_OK), 'the installed chatfanoutd is '
           'executable')
    env = dict(os.environ)
    env['LD_LIBRARY_PATH'] = libdir
    rc, out, err = sh([exe, '--version'], env=env, check=False)
    chk.ok(rc == 0 and out.strip() == 'chatfanoutd %s' % version,
           'the installed chatfanoutd --version prints its version',
           'status %d: %r %r' % (rc, out, err[-500:]))
    _, dyn, _ = sh(['readelf', '-d', exe])
    chk.ok('[libchatfanout.so.0]' in dyn,
           'the installed daemon links the library by its SONAME')
    rpath = re.findall(r'\((?:RUNPATH|RPATH)\).*', dyn)
    chk.ok(not any('build' in r for r in rpath),
           'the installed daemon carries no build-tree rpath', rpath)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--source', required=True)
    ap.add_argument('--build', required=True)
    ap.add_argument('--meson', default='meson')
    ap.add_argument('--cc', default='cc')
    ap.add_argument('--version', required=True)
    ap.add_argument('--sanitize', default='none')
    a = ap.parse_args()
    for tool in ('pkg-config', 'readelf', 'nm'):
        if shutil.which(tool) is None:
            cfd.skip('%s missing' % tool)

    with open(os.path.join(a.source, 'README.md')) as f:
        prog, want_out = readme_parts(f.read())
    chk.ok(prog is not None, 'README has the example:embed block')
    chk.ok(want_out is not None, 'README shows the example\'s output')
    if prog is None or want_out is None:
        return chk.result()
    with open(os.path.join(a.source, 'examples', 'embed.c')) as f:
        chk.ok(f.read() == prog, 'examples/embed.c equals the README block')

    tmp = tempfile.mkdtemp(prefix='cf-embed-')
    try:
        dest = os.path.join(tmp, 'dest')
        sh([a.meson, 'install', '-C', a.build, '--no-rebuild', '--quiet',
            '--destdir', dest])
        pc = find(dest, 'libchatfanout.pc')
        chk.ok(pc is not None, 'libchatfanout.pc is installed')
        if pc is None:
            return chk.result()
        inc = find(dest, 'cf_hub.h')
        incdir = os.path.dirname(os.path.dirname(inc)) if inc else dest
        missing = [h for h in HEADERS if not os.path.isfile(
            os.path.join(incdir, 'chatfanout', h))]
        chk.eq(missing, [], 'every public header is installed')
        libdir = os.path.dirname(find(dest, 'libchatfanout.so') or pc)
        check_library(libdir)
        check_daemon(dest, libdir, a.version)

        env = dict(os.environ)
        env['PKG_CONFIG_PATH'] = os.path.dirname(pc)
        env['PKG_CONFIG_SYSROOT_DIR'] = dest
        _, ver, _ = sh(['pkg-config', '--modversion', 'libchatfanout'],
                       env=env)
        chk.eq(ver.strip(), a.version, 'pkg-config --modversion')
        _, flags, _ = sh(['pkg-config', '--cflags', '--libs',
                          'libchatfanout'], env=env)
        src = os.path.join(tmp, 'embed.c')
        with open(src, 'w') as f:
            f.write(prog)
        exe = os.path.join(tmp, 'embed')
        san = []
        if a.sanitize not in ('', 'none'):
            san = ['-fsanitize=' + a.sanitize, '-fno-omit-frame-pointer']
        cmd = (shlex.split(a.cc) + ['-std=c11', '-Wall', '-Wextra',
                                    '-Wpedantic', '-Werror'] + san +
               [src, '-o', exe] + shlex.split(flags))
        rc, out, err = sh(cmd, check=False)
        chk.ok(rc == 0, 'the README example compiles against the installed '
               'library with pkg-config flags', err[-2000:])
        if rc != 0:
            return chk.result()
        _, dyn, _ = sh(['readelf', '-d', exe])
        chk.ok('[libchatfanout.so.0]' in dyn,
               'the example links the shared library by its SONAME')
        env = dict(os.environ)
        env['LD_LIBRARY_PATH'] = libdir
        rc, out, err = sh([exe], env=env, check=False)
        cfd.log(out + err)

        def norm(s):
            return re.sub(r'\(library [^)]*\)', '(library V)', s)
        chk.ok(rc == 0, 'the example exits 0', 'status %d: %s' % (rc, err))
        chk.eq(norm(out), norm(want_out), 'its output is the one the '
               'README shows')
        chk.ok('(library %s)' % a.version in out,
               'it reports the library version %s' % a.version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=240)
