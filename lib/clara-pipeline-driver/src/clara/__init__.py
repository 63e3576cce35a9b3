"""clara -- the pipeline driver an operator runs under.

    import clara

    def execute(driver, payload):
        source = payload.input_entries["payload"].path
        target = payload.output_entries[0].path
        ...                      # return False (or raise) to fail the operator

    if __name__ == "__main__":
        raise SystemExit(clara.run(execute_handler=execute))

While the handlers run, ``clara_payload`` (the same Payload) is a global of the handlers' modules
and ``clara.clara_payload``; it is None outside a run. Read it at call time (``clara.clara_payload``),
not with ``from clara import clara_payload`` at import time.
"""

from __future__ import annotations

from . import env
from .driver import EXIT_ENVIRONMENT, EXIT_HANDLER_FAILED, EXIT_OK, EXIT_TIMEOUT, Driver, run
from .errors import Error
from .payload import Payload, PayloadEntries, PayloadEntry

__version__ = "0.1.0"

#: The running operator's payload while its handlers run; None otherwise.
clara_payload: Payload | None = None

__all__ = [
    "EXIT_ENVIRONMENT",
    "EXIT_HANDLER_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "Driver",
    "Error",
    "Payload",
    "PayloadEntries",
    "PayloadEntry",
    "__version__",
    "clara_payload",
    "env",
    "run",
]
