"""`xmppfs status DATA_DIR` reads the data directory's database itself, so
it works whether the account is mounted or not (issue: status "works
whether it reads through the mount or from the data directory")."""

import json
import os
import subprocess

from xfsutil import find_xmppfs_bin, wait_for

BOB = 'bob@localhost'


def status(*args):
    p = subprocess.run([find_xmppfs_bin(), 'status'] + list(args),
                       capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout, p.stderr


def test_status_from_data_dir(xmppfs):
    m = xmppfs('alice', offline=True, settle_ms=100)
    d = os.path.join(m.path, 'outbox', BOB)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'queued.txt'), 'wb') as f:
        f.write(b'q' * 1234)
    wait_for(lambda: m.state(os.path.join(d, 'queued.txt')) == 'waiting', 10)

    rc, out, err = status('--json', m.data_dir)   # while mounted
    assert rc == 0, err
    rows = [json.loads(l) for l in out.splitlines()]
    assert {'direction': 'out', 'state': 'waiting', 'progress': 0,
            'size': 1234, 'method': '', 'jid': BOB, 'name': 'queued.txt',
            'error': ''} in rows

    m.unmount()
    rc, out, err = status(m.data_dir)              # not mounted
    assert rc == 0, err
    assert 'queued.txt' in out and 'waiting' in out

    rc, out, err = status(os.path.join(m.data_dir, 'nope'))
    assert rc != 0 and 'nope' in err
