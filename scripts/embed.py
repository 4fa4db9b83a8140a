#!/usr/bin/env python3
"""Turns a file into a C source defining `const char NAME[]` and its size.

Usage: embed.py INPUT OUTPUT NAME
"""
import sys


def main():
    src, dst, name = sys.argv[1:4]
    data = open(src, 'rb').read()
    out = ['/* generated from %s by scripts/embed.py */' % src.split('/')[-1],
           '#include <stddef.h>',
           'const char %s[] = {' % name]
    for i in range(0, len(data), 16):
        out.append('  ' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',')
    out.append('  0x00};')
    out.append('const size_t %s_len = %d;' % (name, len(data)))
    with open(dst, 'w') as f:
        f.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
