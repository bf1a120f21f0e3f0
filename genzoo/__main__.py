"""`python -m genzoo ...` is the same as the `genzoo` console script.

SIGTERM or SIGINT while Python is still importing (before the run installs its own
handlers, genzoo.training.resume.PhaseSignals) ends the process with one line and exit
128 + the signal's number: nothing was written yet, so running the same command again is the resume.
Once the command has ended (its record written, its exit status set), later signals are ignored
while the interpreter shuts down.
"""

import os
import signal
import sys


def _stopped_while_starting(signum, frame):
    sys.stderr.write(f"genzoo: error: {signal.Signals(signum).name} while starting (before the run was built): "
                     "nothing was saved; run the same command again\n")
    sys.stderr.flush()
    os._exit(128 + signum)


if __name__ == "__main__":
    for _signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(_signum, _stopped_while_starting)
    from genzoo.cli import main

    try:
        main()
    finally:  # the run's files are written: a signal while the interpreter shuts down must not turn its exit into "killed"
        for _signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(_signum, signal.SIG_IGN)
