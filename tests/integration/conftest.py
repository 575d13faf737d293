"""pytest fixtures for xmppfs integration tests.

prosody  (session)  a private Prosody on free 127.0.0.1 ports, see
                    xfsutil.Prosody: .domain .host .port .cafile .proxy_jid
                    .proxy_port .accounts .jid() .password() .stop() .start()
                    .pid .log_path .make_account()
xmppfs   (function) factory: m = xmppfs('alice', offline=False, **opts)
                    returns an xfsutil.Mount that is mounted (and online
                    unless offline=True). Teardown unmounts everything and
                    fails the test on sanitizer reports in any daemon log.

Skips (never fails) when /dev/fuse, fusermount3, prosody or the xmppfs
binary are missing.
"""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xfsutil  # noqa: E402

_session_prosody = []


@pytest.fixture(scope='session')
def prosody(tmp_path_factory):
    if not (shutil.which('prosody') and shutil.which('prosodyctl')):
        pytest.skip('prosody is not installed')
    if not shutil.which('openssl'):
        pytest.skip('openssl is not installed')
    d = tmp_path_factory.mktemp('prosody')
    p = xfsutil.start_prosody(str(d))
    _session_prosody.append(p)
    try:
        yield p
    finally:
        _session_prosody.remove(p)
        p.stop()


@pytest.fixture(autouse=True)
def _prosody_running():
    """A test that stopped the session's Prosody and failed before starting
    it again must not break the tests after it."""
    for p in _session_prosody:
        if not p.running():
            p.start()
    yield


@pytest.fixture
def xmppfs(request, tmp_path):
    """Factory: xmppfs(name, offline=False, *, password=None, wait=True,
    env=None, args=(), **opts) -> xfsutil.Mount.

    opts become -o k=v (True -> bare k, None -> drop a default option).
    password overrides the account's password (written to password_file).
    wait=False starts the daemon and returns at once (for tests that expect
    it to fail); the test then inspects m.proc / m.log_text().
    """
    reason = xfsutil.fuse_missing_reason()
    if reason:
        pytest.skip(reason)
    binary = xfsutil.find_xmppfs_bin()
    if binary is None:
        pytest.skip('xmppfs binary not found (XMPPFS_BIN=%r, build/, '
                    'build-asan/)' % os.environ.get('XMPPFS_BIN'))

    mounts = []
    used = set()

    def factory(name, offline=False, *, password=None, wait=True, env=None,
                args=(), **opts):
        if offline:
            domain = xfsutil.DOMAIN
            jid = name if '@' in name else '%s@%s' % (name, domain)
            server = '127.0.0.1:1'
            cafile = None
            pw = password if password is not None else 'offline-pw'
        else:
            pros = request.getfixturevalue('prosody')
            jid = pros.jid(name)
            if jid not in pros.accounts:
                pros.make_account(jid, jid.split('@')[0] + '-pw')
            server = pros.server
            cafile = pros.cafile
            pw = password if password is not None else pros.accounts[jid]
        short = jid.split('@')[0]
        base = short
        i = 2
        while base in used:
            base = '%s%d' % (short, i)
            i += 1
        used.add(base)
        pwfile = tmp_path / ('%s.password' % base)
        pwfile.write_text(pw + '\n')
        os.chmod(pwfile, 0o600)
        data_dir = tmp_path / ('%s-data' % base)
        mnt = tmp_path / ('%s-mnt' % base)
        mnt.mkdir(exist_ok=True)

        o = {'server': server, 'cafile': cafile,
             'password_file': str(pwfile), 'data_dir': str(data_dir),
             'settle_ms': '200'}
        for k, v in opts.items():
            o[k] = v
        olist = []
        for k, v in o.items():
            if v is None or v is False:
                continue
            olist.append(k if v is True else '%s=%s' % (k, v))

        if o.get('data_dir'):  # a test's own data_dir= wins
            data_dir = o['data_dir']
        m = xfsutil.Mount(binary, jid, str(mnt), str(data_dir),
                          str(tmp_path / ('%s.log' % base)), olist,
                          str(pwfile), env=env, extra_args=args,
                          offline=offline)
        mounts.append(m)
        err = None
        try:
            m.start(wait=wait)
        except xfsutil.MountError as e:
            err = str(e)
        if err:
            pytest.fail(err, pytrace=False)
        return m

    yield factory

    problems = []
    for m in mounts:
        try:
            m.unmount()
        except Exception as e:  # keep going: unmount the others
            problems.append('%s: unmount failed: %r' % (m.path, e))
            try:
                m.kill()
            except Exception:
                pass
    for m in mounts:
        reports = xfsutil.sanitizer_reports(m.log_text())
        if reports:
            problems.append('sanitizer report in %s:\n%s\n--- log tail:\n%s'
                            % (m.log_path, '\n'.join(reports[:20]),
                               xfsutil.tail(m.log_path, 60)))
    if problems:
        pytest.fail('\n\n'.join(problems), pytrace=False)


# Under ctest (which sets XFS_BUILD_DIR), a file whose tests were all skipped
# exits 77 so CTest reports SKIP, not a silent pass (STYLE.md §7).
_outcomes = {'passed': 0, 'failed': 0, 'skipped': 0}


def pytest_runtest_logreport(report):
    if report.when == 'call' or report.outcome != 'passed':
        _outcomes[report.outcome] = _outcomes.get(report.outcome, 0) + 1


def pytest_sessionfinish(session, exitstatus):
    if (os.environ.get('XFS_BUILD_DIR') and exitstatus == 0
            and _outcomes['skipped'] and not _outcomes['passed']
            and not _outcomes['failed']):
        session.exitstatus = 77
