"""Which SOCKS5 path xmppfs offers first, against a peer we did not write.

A receiver behind NAT cannot reach the sender's own streamhost; it waits
out a connect timeout on it for every file, then uses the proxy
(INTEROP.md §2.2: "remember per peer that direct failed"). xmppfs must
notice that the proxy was used although its own streamhost came first,
and offer the proxy first to that contact from then on.

The receiver is slixpeer (tests/peer/slixpeer.py) with --s5b-no-direct,
which skips the initiator's own streamhost as a NATed peer would; its
JSON result lists the streamhosts in the order they were offered.
"""

import os
import shutil

from xfsutil import PeerReceiver, make_file, md5_file, wait_for

BOB = 'bob@localhost'
TIMEOUT = 40


def send_one(a, src):
    d = os.path.join(a.path, 'outbox', BOB)
    wait_for(lambda: os.path.isdir(d), 15, msg='no outbox/' + BOB)
    dst = os.path.join(d, os.path.basename(src))
    shutil.copyfile(src, dst)

    def done():
        try:
            return a.state(dst) in ('sent', 'failed', 'rejected')
        except OSError:
            return False
    wait_for(done, TIMEOUT, msg='%s never finished' % dst)
    return dst


def test_proxy_first_after_direct_failed(xmppfs, prosody, tmp_path):
    rdir = tmp_path / 'recv'
    rdir.mkdir()
    srcs = []
    for i in range(2):
        p = tmp_path / ('nat-%d.bin' % i)
        srcs.append((str(p), make_file(str(p), 200000 + i, seed='nat%d' % i)))
    r = PeerReceiver(prosody, 'bob', str(rdir), count=2, timeout=TIMEOUT,
                     resource='natpeer', extra=['--s5b-no-direct'])
    try:
        r.wait_ready()
        a = xmppfs('alice')
        outs = [send_one(a, s) for s, _ in srcs]
        res = r.results(timeout=TIMEOUT)
    finally:
        r.stop()
    assert len(res) == 2, res
    by_name = {x['name']: x for x in res}
    first = by_name['nat-0.bin']
    second = by_name['nat-1.bin']
    # 1st file: our own streamhost first, then the proxy; the peer could
    # only use the proxy.
    assert first['ok'] and first['method'] == 's5b-proxy', first
    assert first['hosts_offered'][0].startswith('alice@localhost/'), first
    assert first['hosts_offered'][-1] == 'proxy.localhost', first
    # 2nd file: xmppfs remembered it and put the proxy first.
    assert second['ok'] and second['method'] == 's5b-proxy', second
    assert second['hosts_offered'][0] == 'proxy.localhost', second
    for (src, digest), dst in zip(srcs, outs):
        assert a.state(dst) == 'sent'
        assert a.xattr(dst, 'user.xmppfs.method') == b's5b-proxy'
        assert md5_file(os.path.join(str(rdir),
                                     os.path.basename(src))) == digest
