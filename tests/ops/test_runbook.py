"""Every command block of ops/RUNBOOK.md, run as an operator runs them: in one root bash session, top to
bottom, against the shipped files — the settings file made from ``ops/systemd/env.example`` the way the
runbook says to fill it in (its DSN with a ``&`` in the query), a real ``actor-admin serve`` started the
way the unit starts it (``systemctl`` is ``tests/ops/systemctl``: EnvironmentFile=, journald as the
unit's stdout/stderr), its journal in a real journald — and the nightly backup line of
``ops/cron/actor-admin-backup`` run the way cron runs it.

Every process the session starts is traced (``strace -e execve``): no secret may appear on any command
line. What differs from a real host is only where things are (the substitutions below) and who runs
them: the service user cannot run this checkout's Python (it lives in root's home), so ``runuser``
switches to root instead.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio

from actor_admin._resources import web_dir
from actor_admin.store import Keyring, open_store
from tests._pg import _admin as admin_sql
from tests._pg import dsn_for_database
from tests.api.conftest import free_port

from ._journald import Journald

OPS = web_dir().parent / "ops"
RUNBOOK = OPS / "RUNBOOK.md"
ENV_EXAMPLE = OPS / "systemd" / "env.example"
CRON = OPS / "cron" / "actor-admin-backup"
HERE = Path(__file__).parent
#: A command block the tests do not run, recognised by a line in it, and why.
NOT_RUN = {"sudo useradd --system": "the installation: it changes the system (its files are checked by their tools)"}
PASSWORD = "pg-" + secrets.token_hex(8)


def runbook_blocks() -> list[str]:
    """The ```bash blocks of the runbook (also those indented under a list item), in order."""
    blocks = []
    for match in re.finditer(r"^( *)```bash\n(.*?)^\1```$", RUNBOOK.read_text(), re.MULTILINE | re.DOTALL):
        indent = len(match.group(1))
        blocks.append("\n".join(line[indent:] for line in match.group(2).splitlines()))
    return blocks


def fill_in(example: str, values: dict[str, str]) -> str:
    """env.example with the values an operator writes into it (each in the file's own quoting)."""
    lines = []
    for line in example.splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}='{values.pop(key)}'" if key in values and not line.startswith("#") else line)
    lines += [f"{key}='{value}'" for key, value in values.items()]  # settings the example leaves out
    return "\n".join(lines) + "\n"


def test_each_secret_in_the_runbook_stays_off_command_lines_in_prose_too() -> None:
    """Commands quoted inline (tables, prose) are not run; none may spell a secret onto a command line."""
    prose = re.sub(r"^( *)```bash\n.*?^\1```$", "", RUNBOOK.read_text(), flags=re.MULTILINE | re.DOTALL)
    for secret in ("ADMIN_TOKEN", "DATABASE_URL", "REDIS_URL", "JWT_SECRET", "CREDENTIALS_KEY", "PARTNER_TOKEN"):
        assert f"${secret}" not in prose and "${" + secret not in prose, secret
    assert "xargs" not in RUNBOOK.read_text()


async def test_every_runbook_command_runs_against_the_shipped_files(
    journald: Journald,
    ops_tool: Callable[[str], str],
    aio_loop: object,
    pg_admin_dsn: str,
    pg_dsn: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    strace, jq = ops_tool("strace"), ops_tool("jq")
    assert jq
    if os.geteuid() != 0:
        pytest.skip("the runbook's session is a root shell")
    host = tmp_path / "host"
    async with _database_with_a_password(pg_admin_dsn, pg_dsn) as database_url:
        await _run_the_runbook(journald, strace, database_url, redis_url, host)


async def _run_the_runbook(journald: Journald, strace: str, database_url: str, redis_url: str, host: Path) -> None:
    port = free_port()
    etc, backups, run_dir = host / "etc/actor-admin", host / "backups", host / "run/actor-admin"
    for directory in (etc, backups, run_dir):
        directory.mkdir(parents=True)
    old_key = secrets.token_bytes(32)
    values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
        "ADMIN_TOKEN": secrets.token_hex(32),
        "CREDENTIALS_KEY": base64.b64encode(old_key).decode(),
        "YCLIENTS_PARTNER_TOKEN": "partner-" + secrets.token_hex(12),
        "YCLIENTS_APP_ID": "1",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "DATA_DIR": str(run_dir),
        # This host has no WhatsApp account and must not call the real YClients:
        "WHATSAPP_TRANSPORT": "simulator",
        "WHATSAPP_SIMULATOR_URL": f"http://127.0.0.1:{free_port()}",  # none runs there: WhatsApp unreachable
        "YCLIENTS_API_URL": f"http://127.0.0.1:{free_port()}",
    }
    secrets_in_use = [values[k] for k in ("JWT_SECRET", "ADMIN_TOKEN", "CREDENTIALS_KEY", "YCLIENTS_PARTNER_TOKEN")]
    env_file = etc / "env"
    env_file.write_text(fill_in(ENV_EXAMPLE.read_text(), dict(values)))
    env_file.chmod(0o600)
    await _salons(values["DATABASE_URL"], old_key)

    venv_bin = Path(sys.prefix) / "bin"
    shim = host / "bin"
    shim.mkdir()
    shutil.copy(HERE / "systemctl", shim / "systemctl")
    substitutions = [
        ("/etc/actor-admin/env", str(env_file)),
        ("/opt/actor-admin/.venv/bin/actor-admin", str(venv_bin / "actor-admin")),
        ("/var/backups/actor-admin", str(backups)),
        ("runuser -u actor-admin ", "runuser -u root "),
        ("http://127.0.0.1:8000", f"http://127.0.0.1:{port}"),
        ("https://wa.example.com", f"http://127.0.0.1:{port}"),
        ("journalctl ", f"journalctl --namespace={journald.namespace} --no-pager "),
    ]

    def on_this_host(text: str) -> str:
        for old, new in substitutions:
            text = text.replace(old, new)
        return "\n".join(re.sub(r"^sudo ", "", line) for line in text.splitlines() if not line.startswith("sudo -i"))

    blocks = runbook_blocks()
    run = [block for block in blocks if not any(marker in block for marker in NOT_RUN)]
    assert len(blocks) - len(run) == len(NOT_RUN) and len(run) >= 12, "a command block lost its way"
    session = [
        "set -euo pipefail",
        f"export PATH={shim}:{venv_bin}:/usr/sbin:/usr/bin:/sbin:/bin",
        f"export FAKE_SYSTEMD_ENVFILE={env_file} FAKE_SYSTEMD_WORKDIR={run_dir} FAKE_SYSTEMD_PIDFILE={host}/pid",
        f"export FAKE_SYSTEMD_PYTHON={sys.executable} FAKE_SYSTEMD_UNIT_HELPER={HERE / '_unit.py'}",
        f"export FAKE_SYSTEMD_NAMESPACE={journald.namespace} FAKE_SYSTEMD_EXECSTART={venv_bin / 'actor-admin'}",
        f"export FAKE_SYSTEMD_READY_URL=http://127.0.0.1:{port}/readyz",
        "systemctl start actor-admin",
    ]
    for number, block in enumerate(run):
        session += [f"echo '### block {number}'", on_this_host(block)]
    session += ["echo '### the nightly backup, as cron runs it'", on_this_host(_cron_command())]
    session += ["systemctl stop actor-admin", "echo '### done'"]
    script = host / "session.sh"
    script.write_text("\n".join(session) + "\n")

    trace = host / "execve.log"
    with trio.fail_after(600):
        done = await trio.run_process(
            [strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=execve", "-s", "65536", "-o", str(trace),
             "bash", str(script)],
            capture_stdout=True, stderr=subprocess.STDOUT, check=False, cwd=host,
        )  # fmt: skip
    output = done.stdout.decode(errors="replace")
    print(output)
    assert done.returncode == 0, f"the runbook session stopped (last block: {output.rsplit('### ', 1)[-1][:200]})"
    assert output.rstrip().endswith("### done")

    # What the blocks did is what the runbook says they do.
    assert "all checks passed" in output  # doctor, in §0 and after the restore
    assert "would apply 0 migration(s) (schema up to date)" in output
    assert "re-encrypted 1 credential blob(s)" in output
    dumps = sorted(backups.glob("actor-admin-*.dump"))
    assert len(dumps) == 1 and dumps[0].stat().st_size > 0  # by hand and by cron: the same day's file
    assert await _credentials_of(values["DATABASE_URL"], _current_key(env_file)) == b"device keys of 102"

    executed = trace.read_text(errors="replace")
    assert executed.count("execve(") > 50
    for secret in [*secrets_in_use, PASSWORD, base64.b64encode(_current_key(env_file)).decode()]:
        assert secret not in executed, "a secret reached a command line"


def _cron_command() -> str:
    """The job of the cron line, as cron hands it to ``sh -c`` (``\\%`` becomes ``%``)."""
    [line] = [line for line in CRON.read_text().splitlines() if re.match(r"^[\d*]", line)]
    fields = line.split(None, 6)
    assert fields[5] == "root"
    return "sh -c " + _shell_quote(fields[6].replace("\\%", "%"))


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _current_key(env_file: Path) -> bytes:
    [line] = [line for line in env_file.read_text().splitlines() if line.startswith("CREDENTIALS_KEY=")]
    return base64.b64decode(line.split("=", 1)[1].strip("'"))


@asynccontextmanager
async def _database_with_a_password(admin_dsn: str, dsn: str) -> AsyncIterator[str]:
    """The test database reached as a role with a password (so a leaked DSN would show in the trace)."""
    role = "aa_runbook_" + secrets.token_hex(4)
    parts = urlsplit(dsn)
    database = parts.path.lstrip("/")
    await trio.to_thread.run_sync(
        admin_sql,
        admin_dsn,
        f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{PASSWORD}'",
        f'ALTER DATABASE "{database}" OWNER TO {role}',
    )
    server = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    query = (parts.query + "&" if parts.query else "") + "application_name=actor-admin&sslmode=disable"
    try:
        yield urlunsplit(parts._replace(netloc=f"{role}:{PASSWORD}@{server}", query=query))
    finally:
        owner = urlsplit(admin_dsn).username or "postgres"
        await trio.to_thread.run_sync(
            admin_sql,
            dsn_for_database(admin_dsn, database),
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            f'ALTER DATABASE "{database}" OWNER TO "{owner}"',
            f'REASSIGN OWNED BY {role} TO "{owner}"',
            f"DROP OWNED BY {role}",
        )
        await trio.to_thread.run_sync(admin_sql, admin_dsn, f"DROP ROLE {role}")


async def _salons(dsn: str, key: bytes) -> None:
    """Salon 101, the runbook's example, and 102 with stored credentials for the key rotation."""
    async with open_store(dsn, pool_size=1, credentials_keys=Keyring(key)) as store:
        await store.companies.upsert_registration(101, title="Salon 101")
        await store.companies.upsert_registration(102, title="Salon 102")
        await store.credentials.save(102, b"device keys of 102")
        # Frozen: serve does not reconnect it (the simulator would not know these keys and unlink it).
        await store.companies.set_integration_status(102, "frozen")


async def _credentials_of(dsn: str, key: bytes) -> bytes | None:
    async with open_store(dsn, pool_size=1, credentials_keys=Keyring(key)) as store:
        result: bytes | None = await store.credentials.load(102)
        return result
