"""A resident shell on a remote host, over one SSH channel: calls written to its stdin, each answer read
up to an end marker that carries a per-call nonce and the call's exit status."""

from __future__ import annotations

import asyncio
import secrets

import asyncssh


class Shell:
    """A resident shell on the remote host, its functions defined (ssh_scripts.FUNCS). Each call runs in a
    subshell (so `exit` ends only it), or, calling its functions, in the shell itself (a fork spared: they
    return, never exit); its output is read up to an end marker that carries a per-call nonce and the
    exit status; a call may be read a first line at a time, then to its end."""

    def __init__(self, proc: asyncssh.SSHClientProcess[str]) -> None:
        self.proc = proc
        self.pending = ""  # the end marker of a call not read to its end

    def begin(self, script: str, *, mode: str = "sub") -> None:
        """mode: "sub" a script in a subshell; "fn" calls of FUNCS's functions, streamed; "buf" the same,
        their output sent in one write (one SSH packet: a probe's 30 lines were up to 30); "raw" FUNCS."""
        marker = f"@@END {secrets.token_hex(8)} "
        # pending before the write: a write that fails (the channel closed) leaves the shell marked
        # unreadable, so its lease closes it instead of handing a dead shell to the next call
        self.pending = "\n" + marker  # the newline printed before the marker is not the script's
        end = f"printf '\\n{marker}%d\\n' $?"
        buffered = f"printf '%s\\n\\n{marker}%d\\n' \"$O\" $?"
        self.proc.stdin.write(
            {
                "sub": f"(\n{script}\n) 2>/dev/null </dev/null; {end}\n",
                "fn": f"{{\n{script}\n}} 2>/dev/null </dev/null; {end}\n",
                "buf": f"O=$({{\n{script}\n}} 2>/dev/null </dev/null); {buffered}\n",
                "raw": f"{script}\ntrue; {end}\n",
            }[mode]
        )

    async def line(self, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            got = await self.proc.stdout.readline()
        if not got.endswith("\n"):
            raise EOFError("remote shell closed")
        return got[:-1]

    async def end(self, timeout: float) -> tuple[int, str]:
        end = self.pending
        async with asyncio.timeout(timeout):
            try:  # one read up to the marker, not one per line: a probe answers dozens of lines
                out = await self.proc.stdout.readuntil(end)
                status = await self.proc.stdout.readline()
            except asyncio.IncompleteReadError as exc:
                raise EOFError("remote shell closed") from exc
        if not status.endswith("\n"):
            raise EOFError("remote shell closed")
        self.pending = ""
        return int(status.strip() or 1), out[: -len(end)]

    async def run(self, script: str, timeout: float, *, mode: str = "sub") -> tuple[int, str]:
        self.begin(script, mode=mode)
        return await self.end(timeout)

    def close(self) -> None:
        self.proc.close()
