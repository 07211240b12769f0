"""Node rules as POSIX shell: the kind watchdog, one-round-trip scripts, rollback's inventory.

:mod:`chaosaa.rules.generate` writes the rules as :class:`Command` data; this module prints
them as the ``sh`` text that runs them where no Python runs (``docker exec`` into a kind
node): :func:`render_sh` and :func:`render_checked_sh` (many commands, one round trip, each
judged as :func:`chaosaa.rules.execute.execute` would), the TTL watchdog that reverts a
fault on its own when its renewals stop, and ``chaosaa rollback``'s inventory.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from chaosaa.rules.generate import NFT_FAMILY, NFT_TABLE, Command, readback

#: separates the parts of :func:`inventory_command`'s output
_DEVICE_MARK = "## chaosaa device "
#: ``sh -c`` text disarming every watchdog whose files are in directory $1
_DISARM_ALL = 'rm -f "$1"/*.armed "$1"/*.expires'


def disarm_all_command(state_dir: str) -> Command:
    """Stop every watchdog of ``state_dir`` without it reverting (``chaosaa rollback``)."""
    return Command(("sh", "-c", _DISARM_ALL, "sh", state_dir.rstrip("/")))


def inventory_command(state_dir: str) -> Command:
    """One round trip for ``chaosaa rollback``: disarm every watchdog on the node (none may
    race the teardown), then list chaosaa's nft table and every device's root qdisc.

    :func:`parse_inventory` reads the output.
    """
    d = state_dir.rstrip("/")
    script = (
        f"{_DISARM_ALL}\n"
        f"nft list table {NFT_FAMILY} {NFT_TABLE} 2>/dev/null\n"
        "for dev in /sys/class/net/*; do\n"
        "  dev=${dev##*/}\n"
        f"  printf '{_DEVICE_MARK}%s\\n' \"$dev\"\n"
        '  tc qdisc show dev "$dev" root 2>/dev/null\n'
        "done\n"
        "exit 0\n"
    )
    return Command(("sh", "-c", script, "sh", d))


def parse_inventory(out: str) -> tuple[str, dict[str, str]]:
    """(nft listing, {device: root qdisc listing}) from :func:`inventory_command`."""
    nft, *parts = out.split(_DEVICE_MARK)
    devices = {}
    for part in parts:
        device, _, listing = part.partition("\n")
        devices[device.strip()] = listing
    return nft, devices


# --------------------------------------------------------------------------- shell


_HEREDOC = "CHAOSAA_EOF"
#: the first comment line of every watchdog: how its processes are found (``pgrep -f``)
WATCHDOG_MARK = "chaosaa watchdog"


def _sh_command(cmd: Command, redirect: str) -> str:
    """One command as shell, its stdin as a quoted heredoc, ``redirect`` after the argv."""
    line = f"{shlex.join(cmd.argv)} {redirect}".rstrip()
    if cmd.stdin is None:
        return line
    if _HEREDOC in cmd.stdin:
        raise ValueError("stdin contains the heredoc delimiter")
    return f"{line} <<'{_HEREDOC}'\n{cmd.stdin.rstrip(chr(10))}\n{_HEREDOC}"


def _guarded(cmd: Command, body: str) -> str:
    """``body``, run only when the command's guard holds (see :class:`Command`)."""
    if cmd.guard is None:
        return body
    cond = [f"out=$({shlex.join(cmd.guard)} 2>/dev/null)"]
    if cmd.when:
        cond.append(f"printf '%s\\n' \"$out\" | grep -Eq {shlex.quote(cmd.when)}")
    if cmd.unless:
        cond.append(f"! printf '%s\\n' \"$out\" | grep -Eq {shlex.quote(cmd.unless)}")
    return f"if {' && '.join(cond)}; then\n{body}\nfi"


def render_sh(commands: Sequence[Command], log_word: str = "/dev/null") -> str:
    """POSIX shell running ``commands`` best-effort: each failure is logged, none is fatal.

    ``log_word`` is inserted as is (a quoted path or a ``"$variable"``).
    """
    out = []
    for cmd in commands:
        run = _sh_command(cmd, f"2>>{log_word}")
        # `|| :` goes after the heredoc's command line, before its body
        head, sep, body = run.partition("\n")
        out.append(_guarded(cmd, f"{head} || :{sep}{body}"))
    return "\n".join(out) + "\n"


#: how a checked script reports a failed command: the mark, its index and exit code, then
#: its output up to the next mark or the end
FAILED_MARK = "## chaosaa failed "
#: separates a checked script's read-back: nft listing, then the tc listing
READBACK_MARK = "## chaosaa readback "


def render_checked_sh(
    commands: Sequence[Command], *, keep_going: bool = False, readback_device: str | None = None
) -> str:
    """POSIX shell running ``commands`` in one go, judging each like
    :func:`chaosaa.rules.execute.execute`: a failure whose output holds one of its
    ``tolerate`` fragments counts as success; any other is reported with
    :data:`FAILED_MARK` and stops the script (or, with ``keep_going``, not). With
    ``readback_device`` the script ends with the :func:`readback` listings.

    One round trip to a node instead of one per command: over ``docker exec`` that is the
    difference between a fault in place in 0.3 s and in 1.5 s on a loaded machine.
    """
    out = []
    for i, cmd in enumerate(commands):
        tolerated = "".join(f" -e {shlex.quote(t)}" for t in cmd.tolerate)
        judge = f"printf '%s' \"$out\" | grep -qF{tolerated}" if cmd.tolerate else "false"
        stop = "" if keep_going else "; exit 1"
        run = f"out=$({_sh_command(cmd, '2>&1')}\n)"
        out.append(
            _guarded(
                cmd,
                f"{run}\nrc=$?\nif [ $rc -ne 0 ] && ! {judge}; then\n"
                f'printf \'{FAILED_MARK}{i} %s\\n%s\\n\' "$rc" "$out"{stop}\nfi',
            )
        )
    if readback_device is not None:
        nft_argv, tc_argv = readback(readback_device)
        out += [
            f"printf '{READBACK_MARK}nft\\n'",
            f"{shlex.join(nft_argv)} 2>/dev/null",
            f"printf '{READBACK_MARK}tc\\n'",
            f"{shlex.join(tc_argv)} 2>/dev/null",
        ]
    return "\n".join(out) + "\nexit 0\n"


def watchdog_script(key: str, revert: Sequence[Command], state_dir: str, poll: float = 0.2) -> str:
    """A shell loop that reverts ``revert`` unless ``<state_dir>/<key>.expires`` is renewed.

    The file holds the expiry as unix milliseconds (:func:`renew_command` rewrites it). The
    loop runs while ``<key>.armed`` exists (:func:`arm_commands` creates it before the loop
    starts; a normal revert disarms by removing it and the loop exits quietly); when the
    expiry passes it runs the revert, logs to ``<key>.log`` and removes its files.
    """
    d = shlex.quote(state_dir.rstrip("/"))
    return (
        "#!/bin/sh\n"
        f"# {WATCHDOG_MARK} for fault {key}: reverts unless renewed (dead-man switch)\n"
        f"d={d}\n"
        f'exp_file="$d/{key}.expires"; armed="$d/{key}.armed"; log="$d/{key}.log"\n'
        "now_ms() { t=$(date +%s%3N); case $t in *N) t=$(($(date +%s) * 1000));; esac; "
        'echo "$t"; }\n'
        "while :; do\n"
        '  [ -f "$armed" ] || exit 0\n'
        '  exp=$(cat "$exp_file" 2>/dev/null); [ -n "$exp" ] || exp=0\n'
        '  [ "$(now_ms)" -gt "$exp" ] && break\n'
        f"  sleep {poll:g}\n"
        "done\n"
        'echo "$(date -u +%FT%TZ) expired: reverting" >> "$log"\n'
        + render_sh(revert, log_word='"$log"')
        + 'rm -f "$exp_file" "$armed"\n'
    )


def renew_command(key: str, expires_ms: int, state_dir: str) -> Command:
    """Rewrite the watchdog's expiry (atomically: write a temp file, rename it)."""
    path = f"{state_dir.rstrip('/')}/{key}.expires"
    return Command(
        ("sh", "-c", 'printf %s "$1" > "$2.tmp" && mv "$2.tmp" "$2"', "sh", str(expires_ms), path)
    )


#: ``sh -c`` text arming a watchdog: $1 state dir, $2 expiry (unix ms), $3 key
_ARM = (
    'mkdir -p "$1" && printf %s "$2" > "$1/$3.expires.tmp" && '
    'mv "$1/$3.expires.tmp" "$1/$3.expires" && : > "$1/$3.armed"'
)


def arm_commands(key: str, expires_ms: int, state_dir: str) -> tuple[Command, ...]:
    """Write the first expiry and the armed marker (start the script after these)."""
    return (Command(("sh", "-c", _ARM, "sh", state_dir.rstrip("/"), str(expires_ms), key)),)


def watchdog_command(
    key: str, expires_ms: int, revert: Sequence[Command], state_dir: str, poll: float = 0.2
) -> Command:
    """Arm the watchdog and start it detached, in one command (one round trip to a node).

    The loop runs in its own session with no terminal and no pipes, so it outlives the
    command, the ``docker exec`` that ran it and the runner. It is armed before it starts,
    synchronously: a disarm issued after this command returns always wins.
    """
    script = watchdog_script(key, revert, state_dir, poll)
    start = '{ setsid sh -c "$4" </dev/null >/dev/null 2>&1 & }'
    return Command(
        (
            "sh",
            "-c",
            f"{_ARM} && {start}",
            "sh",
            state_dir.rstrip("/"),
            str(expires_ms),
            key,
            script,
        ),
        explain=f"the watchdog of fault {key} did not start",
    )


def disarm_command(key: str, state_dir: str) -> Command:
    """Stop a watchdog without it reverting (the caller reverts itself)."""
    d = state_dir.rstrip("/")
    return Command(("rm", "-f", f"{d}/{key}.armed", f"{d}/{key}.expires"))
