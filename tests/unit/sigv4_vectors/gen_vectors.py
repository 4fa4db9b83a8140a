#!/usr/bin/python3
"""Generate SigV4 test vectors for test_sqs_sign with botocore.

Every expected value comes from botocore.auth.SigV4Auth (Debian package
python3-botocore), an implementation independent of cf_sqs_sign.c, so the
C unit test needs no Python at run time.

Regenerate the committed file (from the repository root):

    apt-get install -y python3-botocore
    /usr/bin/python3 tests/unit/sigv4_vectors/gen_vectors.py \
        -o tests/unit/sigv4_vectors/vectors.txt

Random vectors for the cross-check (tests/integration/sigv4_crosscheck.py):

    /usr/bin/python3 tests/unit/sigv4_vectors/gen_vectors.py \
        --random 500 --seed 7 -o /tmp/random_vectors.txt

File format (one vector per block, read by test_sqs_sign.c):

    vector <name>
    <key> <value>          one field per line; repeatable: header
    end

A value is the rest of the line after the first space. Bytes outside
0x21..0x7e, a backslash, and a space at either end of a value are written
as \\xHH. "header" values are "<name> <value>" with the same escaping.
A missing "path"/"query" key means NULL on the C side.
"""

import argparse
import datetime
import hashlib
import random
import sys
import types
from urllib.parse import unquote

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

DOC_AKID = 'AKIDEXAMPLE'
DOC_SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
AKID = 'AKIAIOSFODNN7EXAMPLE'
SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
TOKEN = ('IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+token'
         '/with+base64==')


def ts(text):
    return datetime.datetime.strptime(text, '%Y%m%dT%H%M%SZ')


def vec(name, **kw):
    v = {
        'name': name, 'method': 'GET', 'scheme': 'https',
        'host': 'sqs.us-east-1.amazonaws.com', 'path': '/', 'query': None,
        'headers': [], 'body': b'', 'precomputed': False,
        'content_sha256': False, 'date': '20240115T093000Z',
        'region': 'us-east-1', 'service': 'sqs', 'akid': AKID,
        'secret': SECRET, 'token': None,
    }
    for k in kw:
        if k not in v:
            raise KeyError(k)
    v.update(kw)
    return v


JSON_SEND = (b'{"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/'
             b'chat-fanout","MessageBody":"{\\"room\\":\\"lobby\\",\\"text\\":'
             b'\\"hi \\u00e9\\"}"}')
SQS_JSON = [('Content-Type', 'application/x-amz-json-1.0'),
            ('X-Amz-Target', 'AmazonSQS.SendMessage')]
FORM = [('Content-Type', 'application/x-www-form-urlencoded; charset=utf-8')]


def fixed_vectors():
    big = b'{"Entries":[' + b','.join(
        b'{"Id":"%d","MessageBody":"%s"}' % (i, b'x' * 200)
        for i in range(40)) + b']}'
    batch_q = '&'.join(
        'SendMessageBatchRequestEntry.%d.%s=%s' % (i, k, val)
        for i in range(1, 11)
        for k, val in (('Id', 'm%d' % i), ('MessageBody', 'body%%20%d' % i)))
    return [
        vec('iam-doc-listusers', host='iam.amazonaws.com',
            query='Action=ListUsers&Version=2010-05-08', headers=FORM,
            date='20150830T123600Z', service='iam', akid=DOC_AKID,
            secret=DOC_SECRET),
        vec('iam-doc-listusers-slash-secret', host='iam.amazonaws.com',
            query='Action=ListUsers&Version=2010-05-08', headers=FORM,
            date='20150830T123600Z', service='iam', akid=DOC_AKID,
            secret=SECRET),
        vec('sqs-get-listqueues',
            query='Action=ListQueues&Version=2012-11-05'),
        vec('sqs-post-json-sendmessage', method='POST',
            host='sqs.eu-west-1.amazonaws.com', headers=SQS_JSON,
            body=JSON_SEND, region='eu-west-1'),
        vec('sqs-post-empty-body', method='POST', headers=SQS_JSON),
        vec('sns-post-form-publish', method='POST',
            host='sns.us-west-2.amazonaws.com', headers=FORM,
            body=b'Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-west-2%3A1234'
                 b'56789012%3Achat&Message=hello%20world&Version=2010-03-31',
            region='us-west-2', service='sns'),
        vec('sqs-get-session-token', query='Action=ListQueues',
            token=TOKEN),
        vec('sqs-post-session-token', method='POST', headers=SQS_JSON,
            body=b'{"QueueUrl":"q"}', token=TOKEN),
        vec('query-encoded-specials',
            query='Message=a%20b%2Bc%26d%3De&Attr=%21%2A%27%28%29%3B%3A%40'),
        vec('query-raw-specials', query='q=a b&k=x/y:z@w!$&t=~._-'),
        vec('query-utf8-encoded', query='name=%C3%A9t%C3%A9&sym=%E2%82%AC'),
        vec('query-utf8-raw', query='n\u00e4me=caf\u00e9&e=\U0001F600'),
        vec('query-lowercase-escapes', query='a=%c3%a9%2f&b=%7e%2d'),
        vec('query-repeated-params', query='b=2&a=3&a=1&a=2&a=10'),
        vec('query-missing-and-empty', query='flag&a=1&empty=&&z=&'),
        vec('query-name-sort', query='a-b=1&a=2&a.b=3&A=4&_=5&~=6&a0=7'),
        vec('query-equals-in-value', query='a=b=c&d==&e=%3D'),
        vec('query-plus-literal', query='a=b+c&d=+'),
        vec('query-many-params', method='GET', query=batch_q),
        vec('headers-odd-whitespace', method='POST', headers=[
            ('X-Custom', '  a   b\t\tc  '), ('X-Tab', '\tx\t'),
            ('X-Inner', 'one two  three   four')], body=b'x'),
        vec('headers-duplicates', headers=[
            ('X-Dup', 'first'), ('X-Other', 'o'), ('x-dup', ' second '),
            ('X-DUP', 'third')]),
        vec('headers-case-sort', headers=[
            ('Zeta', 'z'), ('alpha', 'a'), ('Content-Type', 'text/plain'),
            ('X-Amz-Meta-A', '1'), ('x-amz-meta-b', '2')]),
        vec('headers-empty-value', headers=[('X-Empty', ''),
                                            ('X-Blank', '   ')]),
        vec('headers-utf8-value', headers=[('X-Name', 'J\u00fcrgen \u20ac')]),
        vec('path-queue-url', method='POST',
            path='/123456789012/chat-fanout', headers=FORM,
            body=b'Action=SendMessage&MessageBody=hi'),
        vec('path-fifo-queue', method='POST',
            path='/123456789012/rooms.fifo', headers=FORM,
            body=b'Action=ReceiveMessage&MaxNumberOfMessages=10'),
        vec('path-percent-encoded', path='/a%20b/c%2Fd/%7Ee'),
        vec('path-dot-segments', path='/a/./b//c/../d/'),
        vec('path-dotdot-above-root', path='/../x/..'),
        vec('path-raw-utf8-space', path='/\u00e9 x/\u20ac'),
        vec('path-empty', path=''),
        vec('path-trailing-slash', path='/123456789012/q/'),
        vec('region-ap-southeast-2', host='sqs.ap-southeast-2.amazonaws.com',
            region='ap-southeast-2', query='Action=ListQueues'),
        vec('region-cn-north-1', host='sqs.cn-north-1.amazonaws.com.cn',
            region='cn-north-1', service='sqs', query='Action=ListQueues'),
        vec('region-us-gov-sns', method='POST',
            host='sns.us-gov-west-1.amazonaws.com', region='us-gov-west-1',
            service='sns', headers=FORM, body=b'Action=ListTopics'),
        vec('date-leap-day', date='20240229T235959Z'),
        vec('date-y2k', date='20000101T000000Z'),
        vec('date-end-of-1999', date='19991231T235959Z'),
        vec('date-after-2038', date='20380119T031408Z'),
        vec('payload-precomputed-hash', method='POST', headers=SQS_JSON,
            body=JSON_SEND, precomputed=True),
        vec('payload-content-sha256-header', method='POST', headers=SQS_JSON,
            body=JSON_SEND, content_sha256=True),
        vec('payload-content-sha256-empty-token', method='POST',
            content_sha256=True, token=TOKEN),
        vec('payload-binary', method='POST',
            body=bytes(range(256)) + b'\x00\x00end'),
        vec('payload-large', method='POST', headers=SQS_JSON, body=big,
            region='eu-central-1', host='sqs.eu-central-1.amazonaws.com'),
        vec('local-elasticmq', scheme='http', host='127.0.0.1:9324',
            path='/000000000000/test', region='elasticmq', akid='x',
            secret='x', query='Action=GetQueueUrl&QueueName=test'),
        vec('local-localstack-sns', method='POST', scheme='http',
            host='localhost:4566', region='us-east-1', service='sns',
            akid='test', secret='test', headers=FORM,
            body=b'Action=CreateTopic&Name=chat'),
        vec('secret-special-chars', secret='a+b/c=d e~!@#$%^&*()',
            akid='ASIA_TEST-KEY.1', query='x=1'),
    ]


def parse_query(q):
    """Wire query -> decoded (name, value) pairs, as a server reads it."""
    pairs = []
    for piece in q.split('&'):
        if not piece:
            continue
        name, _, value = piece.partition('=')
        pairs.append((unquote(name, errors='strict'),
                      unquote(value, errors='strict')))
    return pairs


class _Capture(botocore.auth.SigV4Auth):
    """SigV4Auth that remembers its intermediate texts."""

    def canonical_request(self, request):
        self.cr = super().canonical_request(request)
        return self.cr

    def string_to_sign(self, request, canonical_request):
        self.sts = super().string_to_sign(request, canonical_request)
        return self.sts


def sign(v):
    when = ts(v['date'])

    class Fixed(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when

    botocore.auth.datetime = types.SimpleNamespace(datetime=Fixed)
    url = '%s://%s%s' % (v['scheme'], v['host'], v['path'])
    params = parse_query(v['query']) if v['query'] else []
    req = AWSRequest(method=v['method'], url=url, data=v['body'],
                     params=params)
    for name, value in v['headers']:
        req.headers[name] = value  # appends: duplicates stay separate
    body_hash = hashlib.sha256(v['body']).hexdigest()
    if v['content_sha256']:
        req.headers['X-Amz-Content-SHA256'] = body_hash
    auth = _Capture(Credentials(v['akid'], v['secret'], v['token']),
                    v['service'], v['region'])
    auth.add_auth(req)
    return {
        'canonical_request': auth.cr,
        'string_to_sign': auth.sts,
        'authorization': req.headers['Authorization'],
        'content_sha256': body_hash,
    }


def esc(data, is_name=False):
    if isinstance(data, str):
        data = data.encode('utf-8')
    out = []
    last = len(data) - 1
    for i, b in enumerate(data):
        edge_space = b == 0x20 and (is_name or i == 0 or i == last)
        if b < 0x20 or b > 0x7e or b == 0x5c or edge_space:
            out.append('\\x%02x' % b)
        else:
            out.append(chr(b))
    return ''.join(out)


def field(key, value):
    value = esc(value)
    return key + (' ' + value if value else '')


def write_vector(f, v):
    exp = sign(v)
    lines = ['vector ' + esc(v['name'], True),
             field('method', v['method']), field('host', v['host'])]
    if v['path'] is not None:
        lines.append(field('path', v['path']))
    if v['query'] is not None:
        lines.append(field('query', v['query']))
    for name, value in v['headers']:
        lines.append('header %s%s' % (esc(name, True),
                                      ' ' + esc(value) if value else ''))
    if v['precomputed']:
        lines.append(field('payload_hash', exp['content_sha256']))
    else:
        lines.append(field('body', v['body']))
    if v['content_sha256']:
        lines.append('flag content_sha256')
    lines += [field('date', v['date']), field('region', v['region']),
              field('service', v['service']),
              field('access_key_id', v['akid']),
              field('secret', v['secret'])]
    if v['token']:
        lines.append(field('token', v['token']))
    lines += [field('expect_canonical_request', exp['canonical_request']),
              field('expect_string_to_sign', exp['string_to_sign']),
              field('expect_authorization', exp['authorization']),
              field('expect_content_sha256', exp['content_sha256']),
              'end', '']
    f.write('\n'.join(lines) + '\n')


# ---- random vectors (for the integration cross-check) ----

QCHARS = ('abcXYZ019-_.~ !*\'()+,/:;@$[]' + '\u00e9\u20ac\U0001F600')


def rand_text(rng, alphabet, lo, hi):
    return ''.join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def rand_component(rng):
    s = rand_text(rng, QCHARS + '%=', 0, 8)
    # Keep the wire text valid: each '%' becomes a whole escape.
    out = []
    for ch in s:
        if ch == '%':
            out.append('%%%02X' % rng.randint(0x20, 0x7e))
        else:
            out.append(ch)
    return ''.join(out)


def rand_vector(rng, i):
    headers = []
    for _ in range(rng.randint(0, 6)):
        name = rng.choice(['X-A', 'x-a', 'X-Bb', 'Content-Type', 'Zz',
                           'x-amz-meta-' + rand_text(rng, 'abc-', 1, 4)])
        value = rand_text(rng, 'ab c\t,;:=/\u00fc', 0, 12)
        headers.append((name, value))
    query = '&'.join(
        rand_component(rng) + rng.choice(['=', '']) + rand_component(rng)
        for _ in range(rng.randint(0, 6)))
    segs = [rng.choice(['a', 'b%20c', '.', '..', '', '\u00e9', 'q.fifo',
                        '123456789012', '%7E', 'x y'])
            for _ in range(rng.randint(0, 5))]
    path = '/' + '/'.join(segs) if segs or rng.random() < 0.5 else ''
    body = bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 64)))
    y = rng.randint(1971, 2099)
    date = '%04d%02d%02dT%02d%02d%02dZ' % (
        y, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
        rng.randint(0, 59), rng.randint(0, 59))
    return vec('random-%d' % i, method=rng.choice(['GET', 'POST', 'PUT']),
               path=path, query=query or None, headers=headers, body=body,
               precomputed=rng.random() < 0.2,
               content_sha256=rng.random() < 0.3, date=date,
               region=rng.choice(['us-east-1', 'eu-west-1', 'local']),
               service=rng.choice(['sqs', 'sns']),
               secret=rand_text(rng, 'abcXYZ019+/=', 1, 40),
               token=rng.choice([None, TOKEN, 'tok/' + str(i)]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('-o', '--output', default='-')
    ap.add_argument('--random', type=int, default=0,
                    help='write N random vectors instead of the fixed table')
    ap.add_argument('--seed', type=int, default=1)
    args = ap.parse_args()
    if args.random:
        rng = random.Random(args.seed)
        vectors = [rand_vector(rng, i) for i in range(args.random)]
    else:
        vectors = fixed_vectors()
    f = sys.stdout if args.output == '-' else open(args.output, 'w',
                                                   encoding='ascii')
    f.write('# SigV4 vectors generated by gen_vectors.py with botocore %s.\n'
            '# Do not edit by hand; see gen_vectors.py for the command.\n\n'
            % botocore.__version__)
    for v in vectors:
        write_vector(f, v)
    if f is not sys.stdout:
        f.close()


if __name__ == '__main__':
    main()
