"""partnerd as an operator runs it (SPEC §1, §6): on a socket it is handed, and its signals.

Each test builds its own stack (harness.Stack) whose partnerd is started the way a real
deployment starts it instead of with --socket:

- by spawn-fcgi (`spawn-fcgi -n -s SOCK -M 0660 -- partnerd ...`): spawn-fcgi creates the
  socket and execs partnerd with it on fd 0, which is also how systemd socket activation
  with StandardInput=socket (systemd/partnerd.service) hands it over. nginx reaches it
  through the repo's nginx.conf.in and partnerd.conf like any other stack.
- with --log FILE: SIGHUP reopens the log (logrotate renames the file, then signals).

PARTNERD_TEST_INHERITED_RESTART=1 adds a test of a restart on a socket that outlives
partnerd (systemctl restart of a socket-activated service, or several spawn-fcgi
children on one socket); see the note at that test.
"""

import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import harness
from harness import HEALTH, StackError, partnerd_bin, tail


def spawn_fcgi():
    found = shutil.which("spawn-fcgi", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")
    assert found, "spawn-fcgi not found: install the Debian package spawn-fcgi"
    return found


class SpawnFcgiStack(harness.Stack):
    """A Stack whose partnerd-K is started by spawn-fcgi on sock_path(K) (fd 0, no --socket)."""

    def __init__(self, log_file=False, **kw):
        kw.setdefault("load", False)        # health and the log need no fixtures
        kw.setdefault("workers", 4)
        super().__init__(**kw)
        self.log_file = log_file

    def log_path(self, k=0):
        return os.path.join(self.dir, "requests-%d.log" % k)

    def _start_partnerd(self, k):
        sock = self.sock_path(k)
        argv = [spawn_fcgi(), "-n", "-s", sock, "-M", "0660", "--",
                partnerd_bin(), "--workers", str(self.workers), "--redis", self.redis_url]
        if self.log_file:
            argv += ["--log", self.log_path(k)]
        argv += self.partnerd_args
        env = dict(os.environ)
        env.pop("PARTNERD_SOCKET", None)     # it must serve fd 0
        env.update(self.partnerd_env)
        logname = "partnerd-%d.log" % k
        p = self._spawn("partnerd-%d" % k, argv, logname, env=env)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            self._check_alive("partnerd-%d" % k, p, logname)
            if time.monotonic() > deadline:
                raise StackError("spawn-fcgi did not create %s within 10 s:\n%s"
                                 % (sock, tail(os.path.join(self.dir, logname))))
            time.sleep(0.02)


def wait_for(pred, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        time.sleep(0.05)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def health_200(stack, rid=None):
    headers = {"X-Request-Id": rid} if rid else None
    st, hdrs, body = stack.get(HEALTH, auth=None, headers=headers)
    assert st == 200, "GET health: HTTP %s, body %r\n%s" % (st, body, stack.logs())
    assert body == {"status": "ok", "redis": "ok"}, body
    if rid:
        assert hdrs.get("X-Request-Id") == rid, hdrs.get("X-Request-Id")
    return hdrs


def stop_partnerd(stack, k=0):
    rc = stack.stop_proc("partnerd-%d" % k, timeout=15)
    assert rc == 0, "partnerd-%d exited %s on SIGTERM (expected 0):\n%s" \
        % (k, rc, tail(os.path.join(stack.dir, "partnerd-%d.log" % k)))


# ---------------------------------------------------------------- tests

def test_lifecycle_spawn_fcgi_socket_on_fd0_serves_health_behind_nginx():
    with SpawnFcgiStack() as stack:
        sock = stack.sock_path(0)
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode), "%s is not a socket" % sock
        assert stat.S_IMODE(st.st_mode) == 0o660, "socket mode %o, spawn-fcgi -M 0660 asked" \
            % stat.S_IMODE(st.st_mode)
        health_200(stack, rid="lifecycle-fd0-1")
        # partnerd says where it listens: fd 0, not a socket of its own
        log = read(os.path.join(stack.dir, "partnerd-0.log"))
        assert "on fd 0" in log, "partnerd's start line does not say fd 0:\n%s" % log
        # An authenticated route answers too (401 without credentials: partnerd, not nginx).
        st_, hdrs, body = stack.get("/v2/partnerProgram/customerPartnerPrograms"
                                    "?identifierName=id&identifierValue=1", auth=None)
        assert st_ == 401 and 'realm="partnerProgram"' in (hdrs.get("WWW-Authenticate") or ""), \
            (st_, dict(hdrs), body)
        stop_partnerd(stack)


def test_lifecycle_partnerd_without_socket_on_fd0_refuses_to_start():
    # No --socket and fd 0 not a socket (/dev/null): exit 2 with a message, never a hang.
    p = subprocess.run([partnerd_bin(), "--redis", "redis://127.0.0.1:1"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                       env=dict((k, v) for k, v in os.environ.items() if k != "PARTNERD_SOCKET"))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert b"fd 0" in p.stderr, p.stderr


def test_lifecycle_sighup_reopens_log_file_after_rename():
    with SpawnFcgiStack(log_file=True) as stack:
        log = stack.log_path(0)
        health_200(stack, rid="lifecycle-before-rotate")
        wait_for(lambda: "rid=lifecycle-before-rotate" in read(log), "the first request line in %s" % log)

        rotated = log + ".1"
        os.rename(log, rotated)
        # Still open on the renamed file until SIGHUP: a request now lands in log.1.
        health_200(stack, rid="lifecycle-during-rotate")
        wait_for(lambda: "rid=lifecycle-during-rotate" in read(rotated), "the request in the renamed log")
        assert not os.path.exists(log), "partnerd recreated %s before SIGHUP" % log

        stack.proc("partnerd-0").send_signal(signal.SIGHUP)
        wait_for(lambda: os.path.exists(log), "SIGHUP to recreate %s" % log)
        health_200(stack, rid="lifecycle-after-rotate")
        text = wait_for(lambda: (lambda t: t if "rid=lifecycle-after-rotate" in t else None)(read(log)),
                        "the request line in the new %s" % log)
        line = [l for l in text.splitlines() if "rid=lifecycle-after-rotate" in l][0]
        for field in ("time=", "org=-", "route=health", "method=GET", "status=200", "ms="):
            assert field in line, "log line lacks %r: %r" % (field, line)
        assert "lifecycle-after-rotate" not in read(rotated), "request logged to the rotated file"
        # partnerd is still serving and still alive after the signal
        assert stack.proc("partnerd-0").poll() is None, "partnerd died on SIGHUP"
        stop_partnerd(stack)


def _restart_on_inherited_socket():
    """A listening socket that outlives partnerd: the parent (here the test, in production
    systemd's partnerd.socket, or spawn-fcgi -F N's siblings) keeps it; partnerd is stopped
    with SIGTERM and a new partnerd must serve the same socket. Fails while partnerd's
    SIGTERM handling shuts the inherited socket down (shutdown(2) on fd 0 affects the
    socket itself, not just partnerd's descriptor: connections are refused afterwards)."""
    with SpawnFcgiStack() as stack:
        stop_partnerd(stack)                # drop spawn-fcgi's partnerd; keep nginx and redis
        path = stack.sock_path(0)
        os.unlink(path)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            ls.bind(path)
            os.chmod(path, 0o660)
            ls.listen(128)

            def start(name):
                log = open(os.path.join(stack.dir, name + ".log"), "ab")
                try:
                    p = subprocess.Popen([partnerd_bin(), "--workers", "2", "--redis", stack.redis_url],
                                         stdin=ls.fileno(), stdout=log, stderr=log,
                                         start_new_session=True)
                finally:
                    log.close()
                stack.procs.append((name, p))
                return p

            start("partnerd-a")
            wait_for(lambda: stack.get(HEALTH, auth=None)[0] == 200, "the first partnerd on the socket")
            rc = stack.stop_proc("partnerd-a", timeout=15)
            assert rc == 0, "exit %s on SIGTERM" % rc
            start("partnerd-b")
            last = []

            def ok():
                last[:] = [stack.get(HEALTH, auth=None)]
                return last[0][0] == 200
            deadline = time.monotonic() + 5
            while not ok() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert last and last[0][0] == 200, \
                "after a SIGTERMed partnerd, a new one on the same inherited socket does not serve: " \
                "HTTP %s %r (the listening socket was shut down)" % (last[0][0], last[0][2])
            rc = stack.stop_proc("partnerd-b", timeout=15)
            assert rc == 0, "exit %s on SIGTERM" % rc
        finally:
            ls.close()


if os.environ.get("PARTNERD_TEST_INHERITED_RESTART") == "1":
    def test_lifecycle_restart_on_inherited_socket_serves_again():
        _restart_on_inherited_socket()
