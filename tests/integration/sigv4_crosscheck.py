#!/usr/bin/python3
"""Differential test of cf_sqs_sign against botocore on random requests.

Generates random vectors with tests/unit/sigv4_vectors/gen_vectors.py
(botocore computes the expected values) and runs the test_sqs_sign binary
on them, so every random case is checked like the committed ones.

    /usr/bin/python3 tests/integration/sigv4_crosscheck.py \
        BUILD/tests/unit/test_sqs_sign [--count N] [--seed S]

Exits 77 (skipped) when botocore or the binary is missing, or 1 when
CF_TEST_NO_SKIP is set (scripts/test), so that CI cannot skip silently.
"""

import argparse
import os
import subprocess
import sys
import tempfile

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, '..', 'unit', 'sigv4_vectors', 'gen_vectors.py')


def skip(why):
    if os.environ.get('CF_TEST_NO_SKIP'):
        print('FAIL (skips not allowed): ' + why, file=sys.stderr)
        return 1
    print('SKIP: ' + why)
    return SKIP


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('binary', nargs='?')
    ap.add_argument('--count', type=int, default=1000)
    ap.add_argument('--seed', type=int, default=None,
                    help='default: a new seed each run, printed')
    args = ap.parse_args()
    try:
        import botocore.auth  # noqa: F401
    except ImportError:
        return skip('botocore missing (apt-get install python3-botocore)')
    if not args.binary or not os.access(args.binary, os.X_OK):
        return skip('test_sqs_sign binary not given or not executable')
    seed = args.seed if args.seed is not None else int.from_bytes(
        os.urandom(4), 'little')
    print('seed %d, %d vectors' % (seed, args.count))
    with tempfile.TemporaryDirectory() as tmp:
        vectors = os.path.join(tmp, 'random_vectors.txt')
        subprocess.run([sys.executable, GEN, '--random', str(args.count),
                        '--seed', str(seed), '-o', vectors], check=True)
        res = subprocess.run([args.binary, vectors], capture_output=True,
                             text=True)
    if res.returncode != 0:
        sys.stdout.write(res.stdout[-20000:])
        sys.stderr.write(res.stderr[-20000:])
        print('FAILED with seed %d' % seed)
        return 1
    print('all %d random vectors match botocore' % args.count)
    return 0


if __name__ == '__main__':
    sys.exit(main())
