"""The one decorator every `pipelines/*.py` entry point goes through: `hydra.main`, but a bad
config (a conf file that is not valid YAML or holds the wrong type, a bad override, a missing
or misspelt key, a value the schema refuses) ends in one ``error:`` line naming the file or key
and exit 1, instead of Hydra's traceback.

``HYDRA_FULL_ERROR=1`` still gives Hydra's complete traceback, for debugging.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
import yaml
from hydra._internal import utils as hydra_utils
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from xnorlab.schema import ConfigError

Task = Callable[[DictConfig], Any]


def _one_line(text: str, limit: int = 400) -> str:
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    line = "; ".join(p for p in parts if not p.startswith("Set the environment variable"))
    return line[:limit] or "(no message)"


def _yaml_error(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if mark is None:
        return f"a config file is not valid YAML: {_one_line(str(err))}"
    what = getattr(err, "problem", None) or _one_line(str(err))
    return (f"{mark.name} is not valid YAML: {what} (line {mark.line + 1}, "
            f"column {mark.column + 1})")


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def config_error_message(err: BaseException) -> str | None:
    """One line describing ``err`` if it is a config error, else None (a bug: keep the
    traceback)."""
    chain = _chain(err)
    for e in chain:  # the innermost reason that names a file and line wins
        if isinstance(e, yaml.YAMLError):
            return _yaml_error(e)
    first = chain[0]
    if isinstance(first, ConfigError):
        return _one_line(str(first))
    if isinstance(first, OverrideParseException):
        return f"bad override: {_one_line(str(first))}"
    if isinstance(first, MissingConfigException):
        return _one_line(str(first))
    if isinstance(first, OmegaConfBaseException):
        key = getattr(first, "full_key", None)
        msg = _one_line(str(first).split("\n    full_key:")[0])
        return f"config key {key!r}: {msg}" if key else f"config: {msg}"
    if isinstance(first, HydraException):
        cause = next((e for e in chain[1:] if isinstance(e, OmegaConfBaseException)), None)
        msg = _one_line(str(first))
        if cause is not None and getattr(cause, "full_key", None):
            msg += f" (key {cause.full_key!r})"
        return msg
    if isinstance(first, (ValueError, TypeError)) and _in_hydra_loading(first):
        # a conf file of the wrong type (a list, a number) fails inside Hydra's loader
        return f"config: {_one_line(str(first))}"
    return None


def _in_hydra_loading(err: BaseException) -> bool:
    """True if ``err`` was raised inside Hydra or OmegaConf code, not ours."""
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_globals.get("__name__", "")
        tb = tb.tb_next
    return bool(last) and last.split(".")[0] in ("hydra", "omegaconf")


def _reporting(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run_and_report(func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception as err:
            msg = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else \
                config_error_message(err)
            if msg is None:
                return original(_raiser(err))  # Hydra's own report of anything else
            sys.stderr.write(f"error: {msg}\n")
            sys.exit(1)

    run_and_report.xnorlab = True  # type: ignore[attr-defined]
    return run_and_report


def _raiser(err: BaseException) -> Callable[[], Any]:
    def again() -> Any:
        raise err
    return again


def entry_point(config_name: str, config_path: str = "../conf") -> Callable[[Task], Callable]:
    """``hydra.main(config_path, config_name, version_base="1.3")`` with config errors in one
    line. ``config_path`` is relative to the entry point's file, as with hydra.main."""

    def decorate(task: Task) -> Callable[..., Any]:
        main = hydra.main(config_path=config_path, config_name=config_name,
                          version_base="1.3")(task)

        @functools.wraps(task)
        def run(*args: Any, **kwargs: Any) -> Any:
            # Hydra reports every error through this module-level function (pinned hydra-core
            # 1.3.8); wrapping it is the one place that sees composition errors (bad YAML, bad
            # overrides) as well as those of the task itself. tests/test_entry.py guards it.
            if not getattr(hydra_utils.run_and_report, "xnorlab", False):
                hydra_utils.run_and_report = _reporting(hydra_utils.run_and_report)
            return main(*args, **kwargs)

        return run

    return decorate
