"""Mount tests of the fs module: offline mounts (no XMPP), real /dev/fuse.

Every test mounts its own daemon with the `xmppfs` fixture (conftest.py),
offline, so files never leave `waiting`. What is checked is the filesystem
contract of DESIGN.md: POSIX semantics of outbox files under the tools
people use (cp, mv, rsync, tar, dd), the xattrs and the status file, the
read-only inbox, error codes, a full data directory, speed of big folders
and persistence across a restart.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_mount.py
(XMPPFS_BIN=... to pick a binary).
"""

import ctypes
import errno
import os
import random
import sqlite3
import stat
import subprocess
import tarfile
import time

import pytest

from xfsutil import make_file, md5_file, wait_for

BOB = 'bob@localhost'
CAROL = 'carol@localhost'


def run(*args, **kw):
    return subprocess.run(list(args), check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60, **kw)


def contact(m, jid=BOB):
    d = m.outbox(jid)
    if not os.path.isdir(d):
        os.mkdir(d)
    return d


def errno_of(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


def wait_state(m, path, want, timeout=5):
    return wait_for(lambda: m.state(path) == want, timeout,
                    msg='%s: state %r, want %r' % (path, m.state(path), want))


@pytest.fixture
def mnt(xmppfs):
    return xmppfs('alice', offline=True, settle_ms=100)


# ---------------------------------------------------------------- layout

def test_root_layout(mnt):
    assert sorted(os.listdir(mnt.path)) == ['events', 'inbox', 'outbox',
                                            'status']
    assert stat.S_ISDIR(os.stat(mnt.outbox()).st_mode)
    assert stat.S_ISREG(os.stat(os.path.join(mnt.path, 'status')).st_mode)
    st = os.stat(os.path.join(mnt.path, 'events'))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444
    assert 'user.xmppfs.link' in os.listxattr(mnt.path)
    assert os.getxattr(mnt.path, 'user.xmppfs.link').decode() != ''
    st = os.stat(mnt.path)
    assert st.st_uid == os.getuid() and st.st_gid == os.getgid()


def test_mkdir_contacts(mnt):
    d = contact(mnt)
    assert os.listdir(mnt.outbox()) == [BOB]
    assert errno_of(os.mkdir, d) == errno.EEXIST
    for bad in ('UPPER@localhost', '@x', 'a@', 'a b@x', 'a@b@c', 'a<b@x',
                'x@.dom', 'a"b@x'):
        assert errno_of(os.mkdir, mnt.outbox(bad)) == errno.EINVAL, bad
    assert errno_of(os.mkdir, os.path.join(mnt.outbox(), 'a@b', 'c')) \
        == errno.ENOENT
    assert errno_of(os.mkdir, os.path.join(mnt.path, 'x')) == errno.EACCES
    assert errno_of(os.mkdir, mnt.inbox(BOB)) == errno.EACCES
    assert errno_of(os.mkdir, os.path.join(d, 'sub')) == errno.EPERM
    # A domain-only JID is a valid bare JID.
    dom = os.path.join(mnt.outbox(), 'example.org')
    os.mkdir(dom)
    assert sorted(os.listdir(mnt.outbox())) == [BOB, 'example.org']
    with open(os.path.join(d, 'f'), 'wb') as f:
        f.write(b'x')
    assert errno_of(os.rmdir, d) == errno.ENOTEMPTY
    os.unlink(os.path.join(d, 'f'))
    os.rmdir(d)
    os.rmdir(dom)
    assert os.listdir(mnt.outbox()) == []


def test_names_too_long(mnt):
    d = contact(mnt)
    long = os.path.join(d, 'x' * 256)
    assert errno_of(open, long, 'wb') == errno.ENAMETOOLONG
    assert errno_of(os.mkdir, mnt.outbox('a' * 250 + '@localhost')) \
        == errno.ENAMETOOLONG
    ok = os.path.join(d, 'y' * 255)
    with open(ok, 'wb') as f:
        f.write(b'255')
    assert os.listdir(d) == ['y' * 255]
    assert errno_of(os.rename, ok, long) == errno.ENAMETOOLONG


# ---------------------------------------------------------------- tools

def test_cp_and_cp_a(mnt, tmp_path):
    d = contact(mnt)
    src = tmp_path / 'report.bin'
    md5 = make_file(str(src), 3 * 1024 * 1024 + 17, seed=1)
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    run('cp', str(src), d + '/plain.bin')
    run('cp', '-a', str(src), d + '/kept.bin')
    assert md5_file(d + '/plain.bin') == md5
    assert md5_file(d + '/kept.bin') == md5
    st = os.stat(d + '/kept.bin')
    assert st.st_size == 3 * 1024 * 1024 + 17
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == 1_600_000_000_123_456_789
    # Overwrite (open O_TRUNC) with a shorter file.
    small = tmp_path / 'small'
    small.write_bytes(b'short')
    run('cp', str(small), d + '/plain.bin')
    with open(d + '/plain.bin', 'rb') as f:
        assert f.read() == b'short'
    # Read-only source: cp must still be able to write the new file.
    os.chmod(small, 0o444)
    run('cp', '-a', str(small), d + '/ro.txt')
    assert open(d + '/ro.txt', 'rb').read() == b'short'
    assert stat.S_IMODE(os.stat(d + '/ro.txt').st_mode) == 0o444


def test_create_excl_and_unlink(mnt):
    d = contact(mnt)
    p = os.path.join(d, 'x')
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, b'hello')
    os.close(fd)
    assert errno_of(os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY) \
        == errno.EEXIST
    os.unlink(p)
    assert os.listdir(d) == []
    assert errno_of(os.stat, p) == errno.ENOENT
    # Regular files only: no symlinks, hard links, fifos.
    with open(p, 'wb') as f:
        f.write(b'x')
    assert errno_of(os.symlink, 'x', os.path.join(d, 'l')) == errno.EPERM
    assert errno_of(os.link, p, os.path.join(d, 'h')) == errno.EPERM
    assert errno_of(os.mkfifo, os.path.join(d, 'p')) == errno.EPERM
    assert os.listdir(d) == ['x']
    # Create in a contact folder that does not exist.
    assert errno_of(open, mnt.outbox(CAROL) + '/f', 'wb') == errno.ENOENT


def test_unlink_while_open(mnt):
    d = contact(mnt)
    p = os.path.join(d, 'open')
    with open(p, 'w+b') as f:
        f.write(b'abc')
        f.flush()
        os.unlink(p)
        assert os.listdir(d) == []
        f.write(b'def')
        f.flush()
        f.seek(0)
        assert f.read() == b'abcdef'
        # (fstat fails here: hard_remove, the kernel sends no handle.)
    assert os.listdir(d) == []


def test_mv(mnt, tmp_path):
    b = contact(mnt, BOB)
    c = contact(mnt, CAROL)
    md5 = make_file(b + '/a', 100_000, seed=2)
    # cp inside the mount (copy_file_range, falls back to read/write).
    run('cp', b + '/a', c + '/copy')
    assert md5_file(c + '/copy') == md5
    os.unlink(c + '/copy')
    run('mv', b + '/a', b + '/b')
    assert os.listdir(b) == ['b']
    run('mv', b + '/b', c + '/b')
    assert os.listdir(b) == [] and os.listdir(c) == ['b']
    assert md5_file(c + '/b') == md5
    # Replace an existing target.
    with open(c + '/old', 'wb') as f:
        f.write(b'old')
    os.rename(c + '/b', c + '/old')
    assert os.listdir(c) == ['old'] and md5_file(c + '/old') == md5
    # Out of the mount: EXDEV, mv copies and unlinks.
    run('mv', c + '/old', str(tmp_path / 'out'))
    assert os.listdir(c) == [] and md5_file(str(tmp_path / 'out')) == md5
    # Into a contact that does not exist, into the root, into inbox.
    with open(b + '/x', 'wb') as f:
        f.write(b'x')
    assert errno_of(os.rename, b + '/x', mnt.outbox('nobody@x') + '/x') \
        == errno.ENOENT
    assert errno_of(os.rename, b + '/x', mnt.path + '/x') == errno.EXDEV


def test_rename_flags(mnt):
    d = contact(mnt)
    for n in ('a', 'b'):
        with open(os.path.join(d, n), 'wb') as f:
            f.write(n.encode())
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD = -100

    def renameat2(a, b, flags):
        r = libc.renameat2(AT_FDCWD, os.path.join(d, a).encode(), AT_FDCWD,
                           os.path.join(d, b).encode(), flags)
        return 0 if r == 0 else ctypes.get_errno()

    assert renameat2('a', 'b', 1) == errno.EEXIST       # RENAME_NOREPLACE
    assert renameat2('a', 'b', 2) == errno.EINVAL       # RENAME_EXCHANGE
    assert renameat2('a', 'c', 1) == 0
    assert sorted(os.listdir(d)) == ['b', 'c']
    assert open(os.path.join(d, 'c'), 'rb').read() == b'a'


def test_rsync_twice(mnt, tmp_path):
    if not os.path.exists('/usr/bin/rsync'):
        pytest.skip('rsync missing')
    d = contact(mnt)
    src = tmp_path / 'src'
    src.mkdir()
    for i in range(20):
        make_file(str(src / ('f%02d.bin' % i)), 1000 * i + 1, seed=i)
    os.chmod(src / 'f03.bin', 0o600)
    r1 = run('rsync', '-a', '--stats', str(src) + '/', d + '/')
    assert b'Number of regular files transferred: 20' in r1.stdout, r1.stdout
    r2 = run('rsync', '-a', '--itemize-changes', '--stats', str(src) + '/',
             d + '/')
    out = r2.stdout.decode()
    assert 'Number of regular files transferred: 0' in out, out
    changes = [ln for ln in out.splitlines()
               if ln[:1] and ln[:1] in '<>ch.*' and ln[1:2] in 'fdLDS']
    assert changes == [], out
    for i in range(20):
        n = 'f%02d.bin' % i
        assert md5_file(d + '/' + n) == md5_file(str(src / n))
    # rsync writes .name.XXXXXX and renames: the result is queued.
    wait_state(mnt, d + '/f05.bin', 'waiting')


def test_rsync_twice_across_restart(mnt, tmp_path):
    """rsync -a sets mode and mtime of the folder it syncs into; after an
    unmount and mount a second rsync -a finds nothing to do, the folder
    itself included."""
    if not os.path.exists('/usr/bin/rsync'):
        pytest.skip('rsync missing')
    d = contact(mnt)
    src = tmp_path / 'src'
    src.mkdir()
    for i in range(5):
        make_file(str(src / ('r%d.bin' % i)), 3000 * i + 7, seed=40 + i)
    os.chmod(src, 0o750)
    os.utime(src, ns=(1_500_000_000_000_000_000, 1_500_000_000_111_222_333))
    r1 = run('rsync', '-a', '--stats', str(src) + '/', d + '/')
    assert b'Number of regular files transferred: 5' in r1.stdout, r1.stdout
    st = os.stat(d)
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert st.st_mtime_ns == os.stat(src).st_mtime_ns
    for i in range(5):
        wait_state(mnt, d + '/r%d.bin' % i, 'waiting')
    mnt.unmount()
    mnt.start()
    r2 = run('rsync', '-a', '--itemize-changes', '--stats', str(src) + '/',
             d + '/')
    out = r2.stdout.decode()
    assert 'Number of regular files transferred: 0' in out, out
    changes = [ln for ln in out.splitlines()
               if ln[:1] and ln[:1] in '<>ch.*' and ln[1:2] in 'fdLDS']
    assert changes == [], out
    assert mnt.state(d + '/r3.bin') == 'waiting'


def test_tar_x(mnt, tmp_path):
    d = contact(mnt)
    names = []
    for i in range(5):
        p = tmp_path / ('t%d' % i)
        make_file(str(p), 5000 * i + 3, seed=10 + i)
        os.utime(p, (1_500_000_000 + i, 1_500_000_000 + i))
        names.append(p.name)
    tp = tmp_path / 'a.tar'
    with tarfile.open(tp, 'w') as t:
        for n in names:
            t.add(str(tmp_path / n), arcname=n)
    run('tar', '-xf', str(tp), '-C', d)
    assert sorted(os.listdir(d)) == names
    for i, n in enumerate(names):
        assert md5_file(d + '/' + n) == md5_file(str(tmp_path / n))
        assert os.stat(d + '/' + n).st_mtime == 1_500_000_000 + i


def test_dd_big_writes(mnt):
    d = contact(mnt)
    t = time.monotonic()
    run('dd', 'if=/dev/zero', 'of=' + d + '/z', 'bs=1M', 'count=64',
        'conv=fsync')
    dt = time.monotonic() - t
    assert os.stat(d + '/z').st_size == 64 << 20
    print('dd 64 MiB: %.2fs (%.0f MB/s)' % (dt, 64 / dt))
    # The spool file holds the bytes.
    sp = os.path.join(mnt.data_dir, 'spool')
    assert any(os.stat(os.path.join(sp, n)).st_size == 64 << 20
               for n in os.listdir(sp))


def test_random_offset_writes(mnt):
    d = contact(mnt)
    p = os.path.join(d, 'rnd')
    rng = random.Random(7)
    model = bytearray()
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        for _ in range(300):
            off = rng.randrange(0, 3 << 20)
            data = rng.randbytes(rng.randrange(1, 70000))
            os.pwrite(fd, data, off)
            if len(model) < off + len(data):
                model.extend(b'\0' * (off + len(data) - len(model)))
            model[off:off + len(data)] = data
        for _ in range(50):
            off = rng.randrange(0, len(model))
            n = rng.randrange(1, 200000)
            assert os.pread(fd, n, off) == bytes(model[off:off + n])
    finally:
        os.close(fd)
    with open(p, 'rb') as f:
        assert f.read() == bytes(model)
    assert os.stat(p).st_size == len(model)


def test_truncate(mnt):
    d = contact(mnt)
    p = os.path.join(d, 't')
    with open(p, 'wb') as f:
        f.write(b'0123456789')
    os.truncate(p, 4)
    assert open(p, 'rb').read() == b'0123'
    os.truncate(p, 8)
    assert open(p, 'rb').read() == b'0123\0\0\0\0'
    with open(p, 'r+b') as f:
        f.truncate(2)
        assert os.fstat(f.fileno()).st_size == 2
    assert os.stat(p).st_size == 2
    run('truncate', '-s', '1M', p)
    assert os.stat(p).st_size == 1 << 20
    wait_state(mnt, p, 'waiting')


def test_chmod_utime_chown(mnt):
    d = contact(mnt)
    p = os.path.join(d, 'm')
    with open(p, 'wb') as f:
        f.write(b'x')
    os.chmod(p, 0o600)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    os.chmod(p, 0o755)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o755
    os.utime(p, ns=(1_234_567_890_987_654_321, 1_234_567_890_987_654_321))
    assert os.stat(p).st_mtime_ns == 1_234_567_890_987_654_321
    with open(p, 'r+b') as f:
        os.utime(f.fileno(), (1000, 2000))
    assert os.stat(p).st_mtime == 2000
    os.chown(p, os.getuid(), os.getgid())
    os.chown(p, -1, -1)
    if os.getuid() == 0:
        assert errno_of(os.chown, p, 12345, -1) == errno.EPERM
    # Folder attributes (rsync -a sets them) are accepted.
    os.chmod(d, 0o700)
    os.utime(d, (3000, 3000))
    st = os.stat(d)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_mtime == 3000


def test_folder_attrs_persist(mnt):
    """mode and mtime of outbox/<jid>/ (mkdir, chmod, utime) survive a
    restart; an rmdir forgets them."""
    d = contact(mnt)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o755
    os.chmod(d, 0o710)
    os.utime(d, ns=(5, 1_234_567_890_123_456_789))
    c = mnt.outbox(CAROL)
    os.mkdir(c, 0o700)
    os.utime(c, ns=(5, -1_500_000_000))      # before 1970
    mnt.unmount()
    mnt.start()
    st = os.stat(d)
    assert stat.S_IMODE(st.st_mode) == 0o710
    assert st.st_mtime_ns == 1_234_567_890_123_456_789
    st = os.stat(c)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_mtime_ns == -1_500_000_000
    # readdirplus gives the same attributes as lookup
    out = run('ls', '-l', '--time-style=+%s', mnt.outbox()).stdout.decode()
    assert 'drwx--x--- ' in out and 'drwx------ ' in out, out
    # utime now, chmod again
    before = time.time()
    os.utime(d)
    assert os.stat(d).st_mtime >= before - 1
    os.rmdir(c)
    os.mkdir(c)
    assert stat.S_IMODE(os.stat(c).st_mode) == 0o755
    assert errno_of(os.chmod, mnt.outbox('nobody@localhost'), 0o700) \
        == errno.ENOENT


def test_fsync_and_statfs(mnt):
    d = contact(mnt)
    p = os.path.join(d, 's')
    with open(p, 'wb') as f:
        f.write(b'y' * 100000)
        f.flush()
        os.fsync(f.fileno())
        os.fdatasync(f.fileno())
    sv = os.statvfs(mnt.path)
    ref = os.statvfs(mnt.data_dir)
    assert sv.f_blocks == ref.f_blocks and sv.f_bsize == ref.f_bsize
    assert sv.f_namemax == 255
    out = run('df', mnt.path).stdout.decode()
    assert mnt.path in out


def test_many_files_list_fast(mnt):
    d = contact(mnt)
    n = 10000
    t0 = time.monotonic()
    for i in range(n):
        fd = os.open('%s/file%05d' % (d, i), os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
    t_create = time.monotonic() - t0
    # Best of three, each after the attribute caches expired (1 s): the
    # machine may be busy with other work.
    t_list = t_ls = 1e9
    for _ in range(3):
        time.sleep(1.1)
        t0 = time.monotonic()
        names = os.listdir(d)
        for name in names:
            os.stat(os.path.join(d, name))
        t_list = min(t_list, time.monotonic() - t0)
        assert len(names) == n
        time.sleep(1.1)
        t0 = time.monotonic()
        out = subprocess.run(['ls', '-l', d], stdout=subprocess.PIPE,
                             check=True).stdout
        t_ls = min(t_ls, time.monotonic() - t0)
        assert out.count(b'\n') == n + 1
    print('create %d: %.2fs; listdir+stat: %.3fs; ls -l: %.3fs'
          % (n, t_create, t_list, t_ls))
    assert t_list < 0.5
    assert t_ls < 1.0


# ---------------------------------------------------------------- state

def test_xattr_states(mnt):
    d = contact(mnt)
    hidden = os.path.join(d, '.part')
    with open(hidden, 'wb') as f:
        f.write(b'data')
    visible = os.path.join(d, 'ready.txt')
    with open(visible, 'wb') as f:
        f.write(b'data')
    assert set(os.listxattr(visible)) == {
        'user.xmppfs.state', 'user.xmppfs.progress', 'user.xmppfs.error',
        'user.xmppfs.peer', 'user.xmppfs.method'}
    wait_state(mnt, visible, 'waiting')
    time.sleep(0.3)
    assert mnt.state(hidden) == 'staged'
    assert mnt.xattr(visible, 'user.xmppfs.progress') == b'0'
    assert mnt.xattr(visible, 'user.xmppfs.error') == b''
    # Offline: it stays waiting.
    time.sleep(0.5)
    assert mnt.state(visible) == 'waiting'
    # The rename to a visible name releases it.
    os.rename(hidden, os.path.join(d, 'part'))
    wait_state(mnt, os.path.join(d, 'part'), 'waiting')
    # Writing again makes it staged while open, waiting after close.
    with open(visible, 'ab') as f:
        f.write(b'more')
        f.flush()
        assert mnt.state(visible) == 'staged'
    wait_state(mnt, visible, 'waiting')
    # Renaming a queued file to a hidden name stages it.
    os.rename(visible, os.path.join(d, '.hidden'))
    assert mnt.state(os.path.join(d, '.hidden')) == 'staged'
    assert errno_of(os.setxattr, os.path.join(d, 'part'),
                    'user.xmppfs.state', b'sent') in (errno.ENOTSUP,
                                                      errno.EPERM)
    assert errno_of(os.getxattr, os.path.join(d, 'part'), 'user.other') \
        == errno.ENODATA


def test_status_file(mnt):
    d = contact(mnt)
    for n in ('plain.txt', 'tab\there', 'back\\slash'):
        with open(os.path.join(d, n), 'wb') as f:
            f.write(b'12345')
    with open(os.path.join(d, '.staged'), 'wb') as f:
        f.write(b'x')
    for n in ('plain.txt', 'tab\there', 'back\\slash'):
        wait_state(mnt, os.path.join(d, n), 'waiting')
    text = open(os.path.join(mnt.path, 'status')).read()
    lines = text.splitlines()
    assert lines[0].startswith('# xmppfs %s ' % mnt.jid), lines[0]
    rows = sorted(ln.split('\t') for ln in lines[1:])
    assert rows == sorted([
        ['out', 'waiting', '0', '5', '-', BOB, 'plain.txt', '-'],
        ['out', 'waiting', '0', '5', '-', BOB, 'tab\\there', '-'],
        ['out', 'waiting', '0', '5', '-', BOB, 'back\\\\slash', '-'],
    ]), text
    p = os.path.join(mnt.path, 'status')
    assert errno_of(open, p, 'wb') == errno.EACCES
    assert errno_of(os.unlink, p) == errno.EACCES
    assert errno_of(open, os.path.join(mnt.path, 'new'), 'wb') \
        == errno.EACCES


def test_restart_persists(mnt):
    d = contact(mnt)
    md5 = make_file(d + '/keep.bin', 300_000, seed=5)
    os.utime(d + '/keep.bin', ns=(1_111_111_111_222_333_444,) * 2)
    with open(d + '/.hidden', 'wb') as f:
        f.write(b'h')
    wait_state(mnt, d + '/keep.bin', 'waiting')
    mnt.unmount()
    mnt.start()
    assert sorted(os.listdir(d)) == ['.hidden', 'keep.bin']
    assert md5_file(d + '/keep.bin') == md5
    assert os.stat(d + '/keep.bin').st_mtime_ns == 1_111_111_111_222_333_444
    assert mnt.state(d + '/keep.bin') == 'waiting'
    assert mnt.state(d + '/.hidden') == 'staged'


def _set_out_state(data_dir, contact, name, state, error):
    """Put an outbox row into a final state the way the XMPP side leaves
    it (daemon must be stopped)."""
    db = sqlite3.connect(os.path.join(data_dir, 'state.db'))
    try:
        cur = db.execute(
            'UPDATE out_file SET state = ?, error = ?, peer = ?, '
            'method = ?, progress = 3 WHERE contact = ? AND name = ?',
            (state, error, contact + '/res', 'ibb', contact, name))
        db.commit()
        assert cur.rowcount == 1
    finally:
        db.close()


def test_failed_and_rejected_keep_state(mnt, tmp_path):
    """DESIGN: a rejected or failed file keeps its state and error until it
    is written, touched or deleted - not after a restart, a read, an open
    for writing without a write, chmod, a rename or time passing."""
    d = contact(mnt)
    names = ('failed.bin', 'rejected.bin', 'third.bin')
    for n in names:
        with open(os.path.join(d, n), 'wb') as f:
            f.write(b'content')
        wait_state(mnt, os.path.join(d, n), 'waiting')
    mnt.unmount()
    _set_out_state(mnt.data_dir, BOB, 'failed.bin', 6, 'stream broke off')
    _set_out_state(mnt.data_dir, BOB, 'rejected.bin', 5, 'declined (403)')
    _set_out_state(mnt.data_dir, BOB, 'third.bin', 6, 'no route')
    mnt.start()
    f, r, t = (os.path.join(d, n) for n in names)

    def check(path, state, error):
        assert mnt.state(path) == state
        assert mnt.xattr(path, 'user.xmppfs.error') == error
        assert mnt.xattr(path, 'user.xmppfs.peer') == (BOB + '/res').encode()

    check(f, 'failed', b'stream broke off')
    check(r, 'rejected', b'declined (403)')
    assert os.listdir(d) == sorted(names)
    assert open(f, 'rb').read() == b'content'
    with open(f, 'r+b') as fh:       # opened for writing, nothing written
        fh.read()
    os.chmod(r, 0o600)
    os.rename(t, os.path.join(d, 'renamed.bin'))
    t = os.path.join(d, 'renamed.bin')
    time.sleep(0.5)                  # past settle_ms
    check(f, 'failed', b'stream broke off')
    check(r, 'rejected', b'declined (403)')
    check(t, 'failed', b'no route')
    status = open(os.path.join(mnt.path, 'status')).read()
    assert '\tfailed.bin\tstream broke off\n' in status, status
    assert '\trejected.bin\tdeclined (403)\n' in status, status
    # Written: sent again, error gone.
    with open(f, 'ab') as fh:
        fh.write(b'+')
    wait_state(mnt, f, 'waiting')
    assert mnt.xattr(f, 'user.xmppfs.error') == b''
    # Touched: likewise.
    run('touch', r)
    wait_state(mnt, r, 'waiting')
    assert mnt.xattr(r, 'user.xmppfs.error') == b''
    # Deleted: forgotten.
    os.unlink(t)
    assert sorted(os.listdir(d)) == ['failed.bin', 'rejected.bin']
    assert 'renamed.bin' not in open(os.path.join(mnt.path, 'status')).read()


# ---------------------------------------------------------------- limits

def test_full_data_dir(xmppfs, tmp_path):
    if os.getuid() != 0:
        pytest.skip('needs root to mount a tmpfs')
    data = tmp_path / 'alice-data'   # the path the fixture gives 'alice'
    data.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs',
                        str(data)], stderr=subprocess.PIPE)
    if r.returncode != 0:
        pytest.skip('cannot mount tmpfs: %s' % r.stderr.decode())
    try:
        m = xmppfs('alice', offline=True, settle_ms=100)
        assert m.data_dir == str(data)
        d = contact(m)
        big = os.path.join(d, 'big')
        with pytest.raises(OSError) as ei:
            with open(big, 'wb') as f:
                for _ in range(16):
                    f.write(b'\xab' * (1 << 20))
        assert ei.value.errno == errno.ENOSPC
        # Still usable: listing, attributes, delete, write again.
        assert 'big' in os.listdir(d)
        os.unlink(big)
        assert os.listdir(d) == []
        md5 = make_file(d + '/small', 500_000, seed=3)
        assert md5_file(d + '/small') == md5
        wait_state(m, d + '/small', 'waiting')
        m.unmount()
        m.start()
        assert os.listdir(d) == ['small']
        assert md5_file(d + '/small') == md5
        m.unmount()
    finally:
        subprocess.run(['umount', '-l', str(data)])


# ---------------------------------------------------------------- inbox

def _inject_inbox(data_dir, sender, name, content, mtime_ms):
    """Add a received file the way store_in_finish leaves it (daemon must
    be stopped): an in_file row in state received and inbox/<id>."""
    db = sqlite3.connect(os.path.join(data_dir, 'state.db'))
    try:
        now = int(time.time() * 1000)
        cur = db.execute(
            'INSERT INTO in_file (sender, peer, name, offer_name, state, '
            'size, progress, method, created_ms, updated_ms, mtime_ms) '
            'VALUES (?, ?, ?, ?, 9, ?, ?, ?, ?, ?, ?)',
            (sender, sender + '/res', name, name, len(content),
             len(content), 'ibb', now, now, mtime_ms))
        db.commit()
        rid = cur.lastrowid
    finally:
        db.close()
    with open(os.path.join(data_dir, 'inbox', str(rid)), 'wb') as f:
        f.write(content)
    return rid


def test_inbox(mnt, tmp_path):
    assert os.listdir(mnt.inbox()) == []
    assert errno_of(open, mnt.inbox() + '/x', 'wb') == errno.EACCES
    mnt.unmount()
    _inject_inbox(mnt.data_dir, BOB, 'photo.jpg', b'JPEGDATA', 1_400_000_000_000)
    _inject_inbox(mnt.data_dir, BOB, 'notes.txt', b'hello', 1_400_000_001_000)
    _inject_inbox(mnt.data_dir, CAROL, 'c.txt', b'carol', 1_400_000_002_000)
    mnt.start()
    assert sorted(os.listdir(mnt.inbox())) == [BOB, CAROL]
    b = mnt.inbox(BOB)
    assert sorted(os.listdir(b)) == ['notes.txt', 'photo.jpg']
    p = b + '/photo.jpg'
    assert open(p, 'rb').read() == b'JPEGDATA'
    st = os.stat(p)
    assert st.st_size == 8 and st.st_mtime == 1_400_000_000
    assert mnt.state(p) == 'received'
    assert mnt.xattr(p, 'user.xmppfs.peer') == (BOB + '/res').encode()
    assert mnt.xattr(p, 'user.xmppfs.method') == b'ibb'
    # Read-only.
    assert errno_of(open, p, 'r+b') == errno.EACCES
    assert errno_of(open, p, 'wb') == errno.EACCES
    assert errno_of(open, b + '/new', 'wb') == errno.EACCES
    assert errno_of(os.mkdir, b + '/dir') == errno.EACCES
    assert errno_of(os.truncate, p, 0) == errno.EACCES
    # Rename within the folder; elsewhere is EXDEV.
    os.rename(p, b + '/renamed.jpg')
    assert sorted(os.listdir(b)) == ['notes.txt', 'renamed.jpg']
    assert errno_of(os.rename, b + '/renamed.jpg',
                    mnt.inbox(CAROL) + '/x') == errno.EXDEV
    # mv out of the mount copies; status lists received files.
    run('mv', b + '/renamed.jpg', str(tmp_path / 'out.jpg'))
    assert (tmp_path / 'out.jpg').read_bytes() == b'JPEGDATA'
    status = open(os.path.join(mnt.path, 'status')).read()
    assert '\nin\treceived\t5\t5\tibb\t%s\tnotes.txt\t-\n' % BOB in status
    os.unlink(b + '/notes.txt')
    # A sender folder exists while it holds files.
    assert sorted(os.listdir(mnt.inbox())) == [CAROL]
    # rm -r of a sender folder.
    run('rm', '-r', mnt.inbox(CAROL))
    assert os.listdir(mnt.inbox()) == []
