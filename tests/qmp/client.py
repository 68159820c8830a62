#!/usr/bin/env python3
"""QMP client for tests/qmp.rs: drives kemu with the real `qemu.qmp` package (PyPI).

Usage: client.py ADDRESS SERIAL_LOG
  ADDRESS: a Unix socket path, or HOST:PORT for TCP.
  SERIAL_LOG: the guest's serial output file (-serial file:...), to know when the
  `powerbtn` guest waits for the power button.

Checks: greeting and negotiation (done by QMPClient.connect), query-status running, stop
(STOP event, status paused), cont (RESUME, running), human-monitor-command, query-cpus-fast,
an unknown command's CommandNotFound error, system_powerdown (POWERDOWN event, then the
guest powers off: SHUTDOWN with guest=true). Prints "qmp client: all checks passed" and
exits 0, or prints what failed and exits 1.
"""

import asyncio
import os
import sys
import time

from qemu.qmp import ExecuteError, QMPClient

TIMEOUT = 60.0


def check(cond, what):
    if not cond:
        print(f"qmp client: FAILED: {what}", flush=True)
        sys.exit(1)


async def next_event(qmp, name):
    """The next event, which must be `name`."""
    event = await asyncio.wait_for(qmp.events.get(), TIMEOUT)
    check(event["event"] == name, f"expected event {name}, got {event}")
    check("seconds" in event["timestamp"], f"event {name} has a QMP timestamp")
    return event


async def connect(qmp, address):
    """Connect, retrying while kemu is still creating its socket."""
    if ":" in address and not address.startswith("/"):
        host, port = address.rsplit(":", 1)
        target = (host, int(port))
    else:
        target = address
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            await qmp.connect(target)
            return
        except Exception as err:  # ConnectError wraps ENOENT / ECONNREFUSED
            if time.monotonic() > deadline:
                check(False, f"cannot connect to {address}: {err}")
            await asyncio.sleep(0.05)


async def wait_status(qmp, want):
    deadline = time.monotonic() + TIMEOUT
    while True:
        st = await qmp.execute("query-status")
        if st["status"] == want:
            return st
        check(time.monotonic() < deadline, f"status never became {want}: {st}")
        await asyncio.sleep(0.05)


async def wait_serial(path, text):
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if text in f.read():
                    return
        except FileNotFoundError:
            pass
        check(time.monotonic() < deadline, f"the guest never printed {text!r}")
        await asyncio.sleep(0.05)


async def main(address, serial):
    qmp = QMPClient("kemu-test")
    await connect(qmp, address)
    check(qmp.greeting is not None, "greeting received")
    print(f"qmp client: connected, greeting {qmp.greeting}", flush=True)

    st = await wait_status(qmp, "running")
    check(st["running"] is True, f"running flag: {st}")
    await wait_serial(serial, "waiting for the power button")

    check(await qmp.execute("stop") == {}, "stop returns {}")
    await next_event(qmp, "STOP")
    st = await qmp.execute("query-status")
    check(st["status"] == "paused" and st["running"] is False, f"paused: {st}")

    regs = await qmp.execute("human-monitor-command", {"command-line": "info registers"})
    check("RIP=" in regs and "CS64" in regs, f"info registers through QMP: {regs!r}")

    check(await qmp.execute("cont") == {}, "cont returns {}")
    await next_event(qmp, "RESUME")
    st = await qmp.execute("query-status")
    check(st["status"] == "running" and st["running"] is True, f"running: {st}")

    cpus = await qmp.execute("query-cpus-fast")
    check(len(cpus) == 1 and cpus[0]["cpu-index"] == 0, f"query-cpus-fast: {cpus}")
    check(cpus[0]["thread-id"] > 0, f"vCPU thread id: {cpus}")

    try:
        await qmp.execute("frobnicate")
        check(False, "an unknown command succeeded")
    except ExecuteError as err:
        check(err.error_class == "CommandNotFound", f"error class: {err.error_class}")

    check(await qmp.execute("system_powerdown") == {}, "system_powerdown returns {}")
    await next_event(qmp, "POWERDOWN")
    ev = await next_event(qmp, "SHUTDOWN")
    check(ev["data"]["guest"] is True, f"SHUTDOWN from the guest: {ev}")
    check(ev["data"]["reason"] == "guest-shutdown", f"SHUTDOWN reason: {ev}")
    try:
        await qmp.disconnect()
    except EOFError:
        pass  # kemu exited after SHUTDOWN and closed the socket first, as QEMU does
    print("qmp client: all checks passed", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
