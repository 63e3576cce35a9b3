"""The operator lifecycle: prepare, wait for readiness, check the payload, execute, cleanup.

Handlers are called as ``prepare(driver)``, ``execute(driver, payload)`` and ``cleanup(driver)``.
A handler fails the operator by raising or by returning ``False`` (``None``/``True`` mean success).
Every failure is logged once, on the ``clara`` logger. After a failed lifecycle,
``wait_for_completion()`` ends the process with the exit code (``exit_on_failure=False`` to return instead).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

from . import env
from .config import DriverConfig
from .errors import Error
from .payload import Payload, check_payload, require_entries
from .sync import wait_for_readiness

log = logging.getLogger("clara")

Handler = Callable[..., Any]

EXIT_OK = 0
#: A handler raised or returned False.
EXIT_HANDLER_FAILED = 1
#: The environment is bad (no input or output entry included), the payload does not check out, or the
#: readiness signal never came.
EXIT_ENVIRONMENT = 2
#: A handler ran longer than NVIDIA_CLARA_TIMEOUT (the number coreutils' ``timeout`` uses).
EXIT_TIMEOUT = 124

GLOBAL_NAME = "clara_payload"
_MISSING = object()


class Driver:
    """Runs an operator's handlers the way the pipeline driver of the platform does."""

    def __init__(
        self,
        execute_handler: Handler,
        prepare_handler: Handler | None = None,
        cleanup_handler: Handler | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        for what, handler in (("execute_handler", execute_handler), ("prepare_handler", prepare_handler),
                              ("cleanup_handler", cleanup_handler)):
            if handler is not None and not callable(handler):
                raise TypeError(f"{what} must be callable, not {type(handler).__name__}")
        if execute_handler is None:
            raise TypeError("execute_handler is required")
        self._execute = execute_handler
        self._prepare = prepare_handler
        self._cleanup = cleanup_handler
        self._environ = dict(os.environ if environ is None else environ)
        self._config: DriverConfig | None = None
        self._thread: threading.Thread | None = None
        self._exit_code: int | None = None
        self._payload: Payload | None = None

    @property
    def config(self) -> DriverConfig:
        """The parsed environment; raises :class:`clara.Error` when it is bad."""
        if self._config is None:
            self._config = DriverConfig.from_environ(self._environ)
        return self._config

    @property
    def job_id(self) -> uuid.UUID:
        return self.config.job_id

    @property
    def job_name(self) -> str:
        return self.config.job_name

    @property
    def stage_name(self) -> str:
        return self.config.stage_name

    @property
    def payload(self) -> Payload | None:
        """The checked payload once the inputs are ready; None before."""
        return self._payload

    @property
    def exit_code(self) -> int | None:
        """0 on success, else one of the EXIT_* codes; None until the run has finished."""
        return self._exit_code

    def start(self) -> None:
        """Begin the lifecycle in the background."""
        if self._thread is not None:
            raise Error("Driver.start() called twice; a driver runs its handlers once")
        self._thread = threading.Thread(target=self._run_lifecycle, name="clara-driver", daemon=True)
        self._thread.start()

    def wait_for_completion(self, *, exit_on_failure: bool = True) -> bool:
        """Block until the lifecycle has finished; True when every handler succeeded.

        When the lifecycle failed, the process ends here with the driver's exit code (see :func:`exit_with`)
        unless ``exit_on_failure=False``: then it returns False and the caller reads :attr:`exit_code`.
        """
        if self._thread is None:
            raise Error("Driver.wait_for_completion() called before start()")
        self._thread.join()
        assert self._exit_code is not None
        if self._exit_code != EXIT_OK and exit_on_failure:
            exit_with(self._exit_code)
        return self._exit_code == EXIT_OK

    def run(self) -> int:
        """start() and wait_for_completion(exit_on_failure=False); returns the exit code."""
        self.start()
        self.wait_for_completion(exit_on_failure=False)
        assert self._exit_code is not None
        return self._exit_code

    def _run_lifecycle(self) -> None:
        try:
            self._exit_code = self._lifecycle()
        except BaseException:
            log.exception("the driver itself failed")
            self._exit_code = EXIT_HANDLER_FAILED

    def _lifecycle(self) -> int:
        try:
            config = self.config
        except Error as exc:
            log.error("%s", exc)
            return EXIT_ENVIRONMENT
        log.info("job %s (%s), stage %s: starting", config.job_name, config.job_id, config.stage_name)
        code = EXIT_OK
        if self._prepare is not None:
            code = self._call("prepare", self._prepare, (self,), config.handler_timeout)
        if code == EXIT_OK:
            code = self._make_ready(config)
        if code == EXIT_OK:
            self._payload = config.payload
        with _published(self._payload, (self._execute, self._prepare, self._cleanup)):
            if code == EXIT_OK:
                code = self._call("execute", self._execute, (self, config.payload), config.handler_timeout)
            if self._cleanup is not None:
                cleanup_code = self._call("cleanup", self._cleanup, (self,), config.handler_timeout)
                code = code or cleanup_code
        if code == EXIT_OK:
            log.info("stage %s: done", config.stage_name)
        return code

    def _make_ready(self, config: DriverConfig) -> int:
        try:
            if config.sync:
                wait_for_readiness(config.synclock_path, config.synclock_timeout)
            require_entries(config.payload)
            check_payload(config.payload, create_outputs=True)
        except Error as exc:
            log.error("%s", exc)
            return EXIT_ENVIRONMENT
        return EXIT_OK

    def _call(self, stage: str, handler: Handler, args: tuple[Any, ...], timeout: float | None) -> int:
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = handler(*args)
            except BaseException as exc:
                outcome["error"] = exc

        if timeout is None:
            target()
        else:
            worker = threading.Thread(target=target, name=f"clara-{stage}", daemon=True)
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                log.error("%s handler still running after %gs (%s); the operator fails",
                          stage, timeout, env.TIMEOUT)
                return EXIT_TIMEOUT
        if "error" in outcome:
            exc = outcome["error"]
            if isinstance(exc, Error):
                log.error("%s handler failed: %s", stage, exc)
            else:
                log.error("%s handler failed: %s: %s", stage, type(exc).__name__, exc, exc_info=exc)
            return EXIT_HANDLER_FAILED
        if outcome.get("value") is False:
            log.error("%s handler returned False", stage)
            return EXIT_HANDLER_FAILED
        return EXIT_OK


def run(
    execute_handler: Handler,
    prepare_handler: Handler | None = None,
    cleanup_handler: Handler | None = None,
) -> int:
    """Run an operator as a program: ``raise SystemExit(clara.run(execute_handler=execute))``.

    Configures logging (INFO to stderr) unless the program already did. Returns the exit code. A handler
    that timed out cannot be stopped from Python, so then the process ends here with EXIT_TIMEOUT.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = Driver(execute_handler, prepare_handler, cleanup_handler).run()
    if code == EXIT_TIMEOUT:
        exit_with(code)
    return code


def exit_with(code: int) -> NoReturn:
    """End the process with ``code``: SystemExit, so ``finally`` blocks and atexit handlers run; after a
    timeout (the handler's thread cannot be stopped from Python) at once, once the logs are flushed."""
    if code == EXIT_TIMEOUT:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


@contextmanager
def _published(payload: Payload | None, handlers: tuple[Handler | None, ...]) -> Iterator[None]:
    """Make ``clara_payload`` the payload in the handlers' module globals and in the clara module."""
    if payload is None:
        yield
        return
    namespaces: list[dict[str, Any]] = []
    for handler in handlers:
        namespace = _globals_of(handler) if handler is not None else None
        if namespace is not None and all(namespace is not seen for seen in namespaces):
            namespaces.append(namespace)
    package = sys.modules[__package__]
    saved = [(ns, ns.get(GLOBAL_NAME, _MISSING)) for ns in namespaces]
    previous = getattr(package, GLOBAL_NAME, None)
    for namespace in namespaces:
        namespace[GLOBAL_NAME] = payload
    setattr(package, GLOBAL_NAME, payload)
    try:
        yield
    finally:
        setattr(package, GLOBAL_NAME, previous)
        for namespace, value in saved:
            if value is _MISSING:
                namespace.pop(GLOBAL_NAME, None)
            else:
                namespace[GLOBAL_NAME] = value


def _globals_of(handler: Handler) -> dict[str, Any] | None:
    function = getattr(handler, "__func__", handler)  # bound method
    function = getattr(function, "func", function)  # functools.partial
    namespace = getattr(function, "__globals__", None)
    if isinstance(namespace, dict):
        return namespace
    module = sys.modules.get(getattr(handler, "__module__", "") or "")
    return vars(module) if module is not None else None
