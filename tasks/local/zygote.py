"""A function environment's zygote: one interpreter that imports what every cold start imports, then forks sandboxes.

Run by the function environment's own interpreter as `python -P zygote.py` (standard library only, like
lambda_launcher.py), with the variables every sandbox shares (TZ, LANG, PYTHONUNBUFFERED...). It imports boto3,
botocore and their client machinery once, and parses the S3 and Bedrock models (not the runtime client: it reads the
function's variables when imported);
each request on stdin (one JSON line: the sandbox's variables, working folder and log file) is answered with `pid N`
on stdout for a forked child that becomes what a fresh `python -P lambda_launcher.py` would be: its own session, the
function's variables only, PYTHONPATH first on sys.path, stdout and stderr to its log, then awslambdaric running the
handler. When a child ends, `exit N CODE` (CODE as Popen.returncode: negative for a signal). The zygote ends with its
runtime, and every descendant of its sandboxes with it: it is their subreaper (Linux), so a handler's daemon that left
its sandbox's session (setsid, double fork) is still its child, killed before the zygote exits.
"""

import ctypes
import json
import os
import runpy
import select
import signal
import sys
import time
import traceback

# Not awslambdaric: it reads the function's variables and starts its HTTP client when imported.
PRELOAD = ("boto3", "botocore.session", "botocore.client")
# The service models the pipeline's handlers load when they make their first client (S3, Bedrock), parsed once into
# boto3's default session: a sandbox's `boto3.client("s3")` then costs ~0.03 s instead of ~0.15 s of CPU. Only the
# parsed JSON is shared: credentials, region and endpoint are still read from the sandbox's variables per client.
WARM_SERVICES = ("s3", "bedrock-runtime")
WARM_DATA = ("endpoints", "partitions", "_retry", "sdk-default-configuration")


def _preload() -> None:
    for module in PRELOAD:
        try:
            __import__(module)
        except ImportError:  # a function environment without it: its sandboxes import what they have
            return
    _warm_default_session()


def _warm_default_session() -> None:
    """Parse the service models into a loader that boto3's default session then uses.

    Through the loader only: a botocore session would read the config and credential files of this zygote's user,
    and keep them for every sandbox; the default session made here has read nothing, its sandboxes read their own.
    """
    import boto3
    import botocore.loaders
    import botocore.session

    try:
        loader = botocore.loaders.create_loader()
        for name in WARM_DATA:
            loader.load_data(name)
        for service in WARM_SERVICES:
            for kind in ("service-2", "endpoint-rule-set-1"):
                loader.load_service_model(service, kind, api_version=None)  # as the client creator asks
        session = botocore.session.get_session()
        session.register_component("data_loader", loader)
        boto3.setup_default_session(botocore_session=session)
    except Exception:  # noqa: BLE001 - an older or trimmed botocore: its sandboxes load what they need themselves
        boto3.DEFAULT_SESSION = None


def _become_sandbox(request: dict) -> None:
    """In the forked child: the sandbox's session, variables, folder, output and path; then the runtime client."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.path[0:0] = [entry for entry in request["env"].get("PYTHONPATH", "").split(os.pathsep) if entry]
    if "AWS_DATA_PATH" in request["env"] and "boto3" in sys.modules:  # its own models: the warmed loader skips them
        import boto3

        boto3.DEFAULT_SESSION = None
    sys.argv = [request["launcher"]]
    code = 1
    try:
        runpy.run_path(request["launcher"], run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except BaseException:  # noqa: BLE001 - the sandbox reports any failure in its log, as the runtime client would
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Orphaned descendants of the sandboxes become this zygote's children (Linux; elsewhere nothing changes)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                found.append(int(entry))
    return found


def _end_descendants() -> None:
    """Kill every child (sandboxes, and the daemons they left behind, reparented here) until none is left."""
    while True:
        for pid in _children():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _reap(out) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
        out.flush()


def main() -> None:
    _become_subreaper()
    _preload()
    parent = os.getppid()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing but replies on the reply pipe
    requests = os.fdopen(0, "rb", buffering=0)
    exits, exits_write = os.pipe()  # a byte on each SIGCHLD: a sandbox's end is reported at once, not at the next poll
    os.set_blocking(exits_write, False)
    signal.set_wakeup_fd(exits_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    pending = b""
    while os.getppid() == parent:
        _reap(out)
        ready = select.select([requests.fileno(), exits], [], [], 0.05)[0]  # the timeout: to notice the runtime gone
        if exits in ready:
            os.read(exits, 4096)
        if requests.fileno() not in ready:
            continue
        chunk = requests.read(65536)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            pid = os.fork()
            if pid == 0:
                out.close()
                requests.close()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(exits)
                os.close(exits_write)
                _become_sandbox(json.loads(line))
            out.write(f"pid {pid}\n")
            out.flush()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _end_descendants()
    os._exit(0)


if __name__ == "__main__":
    main()
