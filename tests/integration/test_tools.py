"""The outbox through the tools people use, end to end.

Every test mounts an online pair (bob, then alice) against the session's
Prosody and puts files into alice's outbox/bob@localhost/ with one tool:
cp -a, mv from /tmp, rsync -a --partial (twice), tar x, install -m 644,
Python's shutil.copy2, and GLib's gio copy / gio move / gio save (what
GNOME Files and GTK applications use).

Each must leave exactly the right files sent: all of them arrive in bob's
inbox/alice@localhost/ with the right MD5, one copy each (nothing sent
twice because a tool set times or mode after close), no temporary or dot
file is ever offered (bob's inbox holds only the expected names), alice's
outbox holds exactly the expected names (no leftover staged .name.XXXXXX),
every one 'sent', and both status files agree.

Every wait is bounded. Run:
    /usr/bin/python3 -m pytest -q tests/integration/test_tools.py
(XMPPFS_BIN=... to pick a binary).
"""

import errno
import os
import shutil
import stat
import subprocess
import time

import pytest

from xfsutil import make_file, md5_file, read_status, tail, wait_for

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
XFER_TIMEOUT = 40
QUIET = 2.0     # after everything is sent: nothing more may arrive


# ---------------------------------------------------------------- helpers

def run(*args, input=None, cwd=None):
    r = subprocess.run(list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60, input=input,
                       cwd=cwd)
    assert r.returncode == 0, '%r failed (%d):\n%s' % (
        args, r.returncode, r.stdout.decode(errors='replace'))
    return r.stdout.decode(errors='replace')


def diag(*mounts, lines=30):
    return '\n'.join('--- %s (%s) log tail:\n%s'
                     % (m.jid, m.log_path, tail(m.log_path, lines))
                     for m in mounts)


def xattr(path, name):
    try:
        return os.getxattr(path, 'user.xmppfs.' + name).decode()
    except OSError as e:
        if e.errno == errno.ENODATA:
            return ''
        raise


def listing(d):
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []


@pytest.fixture
def pair(xmppfs):
    """(alice, bob, alice's outbox/bob@localhost/)."""
    b = xmppfs('bob')
    a = xmppfs('alice')
    d = a.outbox(BOB)
    try:
        os.mkdir(d)
    except FileExistsError:
        pass
    return a, b, d


def make_tree(root, spec):
    """Files under root: {name: size}; returns {name: md5}."""
    root.mkdir(exist_ok=True)
    out = {}
    for i, (name, size) in enumerate(sorted(spec.items())):
        out[name] = make_file(str(root / name), size, seed='%s%d' % (name, i))
    return out


SPEC = {
    'empty.txt': 0,
    'one.bin': 1,
    'notes with spaces.txt': 3000,
    'fotó.jpg': 100 * 1024 + 3,
    'big.bin': 1024 * 1024 + 17,
}


def check_delivered(a, b, d, expected, timeout=XFER_TIMEOUT):
    """expected {name: md5}: every name arrives in bob's inbox with its
    md5, every outbox file reaches 'sent', and after a quiet time there is
    nothing else: no second copy, no temp or dot file, on either side."""
    names = sorted(expected)
    inbox = b.inbox(ALICE)

    def arrived():
        return set(names) <= set(listing(inbox))
    try:
        wait_for(arrived, timeout, interval=0.05)
    except TimeoutError:
        pytest.fail('bob inbox: %r, want %r; alice outbox %r\n%s'
                    % (listing(inbox), names, listing(d), diag(a, b)))

    def all_sent():
        return all(xattr(os.path.join(d, n), 'state') == 'sent'
                   for n in names)
    try:
        wait_for(all_sent, timeout, interval=0.05)
    except TimeoutError:
        pytest.fail('outbox states %r\n%s' % (
            dict((n, xattr(os.path.join(d, n), 'state')) for n in names),
            diag(a, b)))
    time.sleep(QUIET)
    got = listing(inbox)
    assert got == names, ('bob received %r, want exactly %r (extra = sent '
                          'twice or a temp file sent)\n%s'
                          % (got, names, diag(a, b)))
    for n in names:
        assert md5_file(os.path.join(inbox, n)) == expected[n], n
        assert md5_file(os.path.join(d, n)) == expected[n], n
    # Nothing from anyone else, no other sender folder.
    assert listing(b.inbox()) == [ALICE], listing(b.inbox())
    # alice's outbox: exactly the names, no leftover staged dot files.
    assert listing(d) == names, ('alice outbox %r, want %r'
                                 % (listing(d), names))
    for n in names:
        p = os.path.join(d, n)
        assert xattr(p, 'state') == 'sent', (n, xattr(p, 'state'))
        assert int(xattr(p, 'progress')) == os.stat(p).st_size
    # Status files: one 'out sent' row per name at alice, one
    # 'in received' row per name at bob, nothing else.
    _, rows = read_status(a.path)
    out_rows = sorted((r['name'], r['state']) for r in rows
                      if r['dir'] == 'out')
    assert out_rows == [(n, 'sent') for n in names], rows
    _, rows = read_status(b.path)
    in_rows = sorted((r['name'], r['state'], r['jid']) for r in rows
                     if r['dir'] == 'in')
    assert in_rows == [(n, 'received', ALICE) for n in names], rows


# ---------------------------------------------------------------- tools

def test_cp_a_tree(pair, tmp_path):
    """cp -a of a folder of files (modes and times kept)."""
    a, b, d = pair
    src = tmp_path / 'tree'
    expected = make_tree(src, SPEC)
    os.chmod(src / 'one.bin', 0o600)
    os.utime(src / 'big.bin', (1_500_000_000, 1_500_000_000))
    run('cp', '-a', str(src) + '/.', d + '/')
    check_delivered(a, b, d, expected)
    assert stat.S_IMODE(os.stat(os.path.join(d, 'one.bin')).st_mode) == 0o600
    assert int(os.stat(os.path.join(d, 'big.bin')).st_mtime) == 1_500_000_000


def test_mv_from_tmp(pair, tmp_path):
    """mv from /tmp (another file system: copy, then delete the source)."""
    a, b, d = pair
    src = tmp_path / 'mvsrc'
    expected = make_tree(src, {'moved.bin': 50_000, 'moved 2.txt': 12})
    run('mv', str(src / 'moved.bin'), str(src / 'moved 2.txt'), d + '/')
    assert listing(str(src)) == []
    check_delivered(a, b, d, expected)


def test_rsync_partial_twice(pair, tmp_path):
    """rsync -a --partial (writes .name.XXXXXX, renames); a second run
    transfers nothing and nothing is sent again."""
    a, b, d = pair
    if not shutil.which('rsync'):
        pytest.skip('rsync missing')
    src = tmp_path / 'rs'
    expected = make_tree(src, SPEC)
    run('rsync', '-a', '--partial', str(src) + '/', d + '/')
    check_delivered(a, b, d, expected)
    out = run('rsync', '-a', '--partial', '--itemize-changes', '--stats',
              str(src) + '/', d + '/')
    assert 'Number of regular files transferred: 0' in out, out
    changes = [ln for ln in out.splitlines()
               if ln[:1] and ln[:1] in '<>ch*' and ln[1:2] in 'fdLDS']
    assert changes == [], out
    check_delivered(a, b, d, expected)


def test_tar_x(pair, tmp_path):
    """tar x into the outbox (tar sets mode and times after writing)."""
    a, b, d = pair
    src = tmp_path / 'tarsrc'
    expected = make_tree(src, SPEC)
    arch = tmp_path / 'a.tar'
    run('tar', 'cf', str(arch), '-C', str(src), *sorted(expected))
    run('tar', 'xf', str(arch), '-C', d)
    check_delivered(a, b, d, expected)


def test_install_m644(pair, tmp_path):
    a, b, d = pair
    src = tmp_path / 'inst'
    expected = make_tree(src, {'tool.sh': 700, 'lib.so': 40_000})
    for n in expected:
        os.chmod(src / n, 0o755)
    run('install', '-m', '644', *[str(src / n) for n in sorted(expected)],
        d + '/')
    check_delivered(a, b, d, expected)
    for n in expected:
        assert stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode) == 0o644


def test_python_shutil_copy2(pair, tmp_path):
    """shutil.copy2: copyfile, then copystat (times, mode) after close."""
    a, b, d = pair
    src = tmp_path / 'py'
    expected = make_tree(src, SPEC)
    for n in sorted(expected):
        shutil.copy2(str(src / n), d)
    check_delivered(a, b, d, expected)
    for n in expected:
        assert int(os.stat(os.path.join(d, n)).st_mtime) == \
            int(os.stat(str(src / n)).st_mtime)


def _gio():
    if not shutil.which('gio'):
        pytest.skip('gio (libglib2.0-bin) missing')


def test_gio_copy(pair, tmp_path):
    _gio()
    a, b, d = pair
    src = tmp_path / 'gc'
    expected = make_tree(src, SPEC)
    run('gio', 'copy', *[str(src / n) for n in sorted(expected)], d + '/')
    check_delivered(a, b, d, expected)


def test_gio_move(pair, tmp_path):
    _gio()
    a, b, d = pair
    src = tmp_path / 'gm'
    expected = make_tree(src, {'gmoved.bin': 70_000, 'gmoved.txt': 5})
    for n in sorted(expected):
        run('gio', 'move', str(src / n), d + '/' + n)
    assert listing(str(src)) == []
    check_delivered(a, b, d, expected)


def test_gio_save(pair, tmp_path):
    """gio save (GFile replace: a new file, then saving over it, which goes
    through a temporary .goutputstream-XXXXXX renamed over the file): the
    first and the second version each arrive once; no temp file is sent."""
    _gio()
    a, b, d = pair
    dest = os.path.join(d, 'note.txt')
    v1 = b'data\n'
    run('gio', 'save', dest, input=v1)
    check_delivered(a, b, d, {'note.txt': md5_of(v1)})
    v2 = b'second version, longer\n' * 10
    run('gio', 'save', dest, input=v2)
    inbox = b.inbox(ALICE)
    try:
        wait_for(lambda: len(listing(inbox)) >= 2, XFER_TIMEOUT)
    except TimeoutError:
        pytest.fail('second gio save not received: %r; outbox %r (%s)\n%s'
                    % (listing(inbox), listing(d), xattr(dest, 'state'),
                       diag(a, b)))
    wait_for(lambda: xattr(dest, 'state') == 'sent', XFER_TIMEOUT,
             msg='state %r' % xattr(dest, 'state'))
    time.sleep(QUIET)
    assert listing(inbox) == ['note (2).txt', 'note.txt'], listing(inbox)
    assert open(os.path.join(inbox, 'note.txt'), 'rb').read() == v1
    assert open(os.path.join(inbox, 'note (2).txt'), 'rb').read() == v2
    assert listing(d) == ['note.txt'], listing(d)
    assert open(dest, 'rb').read() == v2
    _, rows = read_status(b.path)
    assert sorted(r['name'] for r in rows if r['dir'] == 'in') == \
        ['note (2).txt', 'note.txt'], rows


def md5_of(data):
    import hashlib
    return hashlib.md5(data).hexdigest()
