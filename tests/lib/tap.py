"""PASS/FAIL lines for tests/run-tests: the Python side of tests/lib/tap.sh.

Every check prints one line, "PASS <prog>/<name>" or "FAIL <prog>/<name>: <detail>";
finish() exits non-zero when a check failed or none ran. tests/run-tests counts those lines.
Used by the appliance, QEMU and NBD test scripts; import it after putting tests/lib on
sys.path (the scripts run from the top of the tree).
"""
import shutil
import sys


class Checks:
    def __init__(self, prog):
        self.prog = prog
        self.failed = 0
        self.passed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print("PASS %s/%s" % (self.prog, name), flush=True)
        else:
            self.failed += 1
            print("FAIL %s/%s%s" % (self.prog, name, ": " + str(detail)[:3000] if detail else ""),
                  flush=True)
        return cond

    def note(self, text):
        print("     %s: %s" % (self.prog, text), flush=True)

    def finish(self):
        sys.exit(1 if self.failed or not self.passed else 0)

    def need_tools(self, *tools):
        """Fail loudly (never skip) when a tool the test needs is missing."""
        missing = [t for t in tools if not shutil.which(t)]
        for t in missing:
            self.check("needs-" + t, False, "%s is not installed (run scripts/setup)" % t)
        if missing:
            self.finish()
