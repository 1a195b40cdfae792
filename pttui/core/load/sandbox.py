"""How the ``torch.load`` child process is started and stopped: command, environment, limits.

The child is where a file's pickle runs, so it gets as little as it needs. Every
load runs from a fresh empty folder (so no ``torch.py`` next to a checkpoint can
shadow a real module) with ``-P`` where Python has it. A ``weights_only=False``
load, which runs whatever the file pickled, also gets an environment reduced to
an allow-list with every credential-looking variable dropped, no inherited file
descriptors, resource ceilings the child applies to itself (see
``_load_child.apply_limits``) before it touches the file, and, where the kernel
allows it, a network namespace of its own with no interface but a downed
loopback (:func:`drop_network`). This is damage control, not isolation: the code
still runs as the user and can read and write the user's files.
"""

from __future__ import annotations

import ctypes
import fnmatch
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import pttui
from pttui.core.base.orphans import PARENT_ENV

# Variables a torch load may need; everything else is dropped for an unsafe load.
_KEEP = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM",
         "TMPDIR", "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE",
         "PYTHONHASHSEED", "PYTHONIOENCODING", "VIRTUAL_ENV",
         "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "LD_LIBRARY_PATH", "CUDA_*", "NVIDIA_*",
         "PYTORCH_*", "TORCH_*", "OMP_NUM_THREADS", "MKL_*", "OPENBLAS_*", "KMP_*",
         "NCCL_*", "HIP_*", "ROCR_*", "XDG_RUNTIME_DIR")

# Never passed to an unsafe load, even when _KEEP matches (TORCH_HUB_TOKEN, ...).
SENSITIVE = ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO", "*TOKEN*", "*SECRET*",
             "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*", "*_KEY", "*_KEY_ID", "*APIKEY*",
             "*API_KEY*", "AWS_*", "GOOGLE_*", "GCLOUD_*", "GCP_*", "AZURE_*", "HF_*",
             "HUGGING_FACE_*", "HUGGINGFACE_*", "WANDB_*", "COMET_*", "NEPTUNE_*",
             "MLFLOW_*", "OPENAI_*", "ANTHROPIC_*", "GITHUB_*", "GH_*", "GITLAB_*",
             "DOCKER_*", "KUBECONFIG", "NETRC", "KRB5CCNAME", "DATABASE_URL", "*_DSN",
             "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "*_PROXY")



def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, p.upper()) for p in patterns)


def is_sensitive(name: str) -> bool:
    return _matches(name, SENSITIVE)


def package_root() -> str:
    """The folder that holds the ``pttui`` package, so the child imports this very copy."""
    return os.path.dirname(os.path.dirname(os.path.abspath(pttui.__file__)))


def child_env(unsafe: bool, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours (safe load) or an allow-list minus secrets (unsafe)."""
    base = dict(os.environ if base is None else base)
    if unsafe:
        env = {k: v for k, v in base.items() if _matches(k, _KEEP) and not is_sensitive(k)}
    else:
        env = base
    root = package_root()
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = str(os.getpid())  # die_with_spawner
    env.pop("PYTHONSTARTUP", None)
    env.pop("PYTHONINSPECT", None)
    return env


_requests: queue.SimpleQueue = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def spawn(cmd: list[str], **popen: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **popen)``, started from one thread that lives as long as
    pttui. The child dies with pttui through PR_SET_PDEATHSIG (die_with_spawner),
    and Linux sends that signal when the *thread* that forked it ends: forked from a
    worker thread, a load would be killed as soon as that worker returned."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_serve, name="pttui-spawner", daemon=True)
            _spawner.start()
    started: Future[subprocess.Popen] = Future()
    _requests.put((cmd, popen, started))
    return started.result()  # Popen's own error, raised here


def _serve() -> None:
    while True:
        cmd, popen, started = _requests.get()
        try:
            started.set_result(subprocess.Popen(cmd, **popen))
        except BaseException as err:  # noqa: BLE001 - raised again in the asking thread
            started.set_exception(err)


def child_command(module: str = "pttui.core.load._child") -> list[str]:
    """``python [-P] -m MODULE``; for a load, the request follows as one JSON argument."""
    cmd = [sys.executable]
    if sys.version_info >= (3, 11):
        cmd.append("-P")  # do not put the working folder on sys.path
    return [*cmd, "-m", module]


def exited(pid: int | None) -> bool:
    """Has the child exited? Leaves it unreaped (a zombie), so its group id stays ours."""
    if pid is None:
        return True
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def kill_group(pgid: int) -> None:
    """SIGKILL the child's whole process group: whatever the file started dies with it."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


def drop_network() -> str:
    """In the child, before the file is opened: move into a new network namespace.

    Root can do that directly; anyone else first enters a user namespace of their
    own (unprivileged user namespaces: on by default in most distributions, off
    where an admin or AppArmor said so) and maps their ids so files keep their
    owners. Returns ``"isolated"`` or why not, for the load report.
    """
    if not sys.platform.startswith("linux"):
        return f"not isolated: network namespaces are Linux only ({sys.platform})"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        uid, gid = os.geteuid(), os.getegid()
        flags = _CLONE_NEWNET if uid == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
        if libc.unshare(flags) != 0:
            err = ctypes.get_errno()
            return f"not isolated: the kernel refused a network namespace ({os.strerror(err)})"
        if flags & _CLONE_NEWUSER:
            _map_ids(uid, gid)
    except (OSError, AttributeError) as err:
        return f"not isolated: {err}"
    return "isolated"


def _map_ids(uid: int, gid: int) -> None:
    """Be the same user inside the namespace (else every file looks owned by nobody)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        try:
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        except OSError:
            pass  # unmapped ids still work; they only show as nobody
