"""The check runner the client scripts share: `@check` registers a function,
`run()` calls every one, prints ok/FAIL with the traceback of each failure,
and returns the process exit status (1 if any check failed)."""

import sys
import traceback

CHECKS = []


def check(function):
    CHECKS.append(function)
    return function


def run(cleanup=None):
    failed = 0
    for function in CHECKS:
        try:
            function()
            print(f"ok   {function.__name__}", flush=True)
        except Exception:  # noqa: BLE001 - report every check's failure, then exit non-zero
            failed += 1
            print(f"FAIL {function.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
    if cleanup is not None:
        cleanup()
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0
