"""The one decorator every `pipelines/*.py` entry point goes through: `hydra.main`, but a bad
config ends in one ``error:`` line naming the file or key and exit 1, instead of Hydra's
traceback: a conf file that is not valid YAML, empty, or of the wrong type; a bad override or
an unknown choice; a missing, misspelt or mistyped key.

Errors raised by the entry point's own work after the config is read keep their traceback
(they are bugs). ``HYDRA_FULL_ERROR=1`` gives Hydra's complete traceback for everything.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import hydra
import yaml
from hydra._internal import utils as hydra_utils
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xnorlab.schema import ConfigError, omegaconf_message

Task = Callable[[DictConfig], Any]


def _one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line, without Hydra's search-path listing and debugging hint."""
    text = str(text).split("Config search path:")[0].split("Set the environment variable")[0]
    line = " ".join(p.strip() for p in text.splitlines() if p.strip())
    return line[:limit] or "(no message)"


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _frames(tb: TracebackType | None) -> list[Any]:
    out = []
    while tb is not None:
        out.append(tb.tb_frame)
        tb = tb.tb_next
    return out


def _file_being_read(err: BaseException) -> str | None:
    """The conf file Hydra was loading when ``err`` was raised (from its loader's frame)."""
    for e in _chain(err):
        for frame in reversed(_frames(e.__traceback__)):
            path = frame.f_locals.get("full_path")
            if isinstance(path, str) and path.endswith(".yaml"):
                return path
    return None


def composition_error(err: BaseException) -> str:
    """One line for an error raised while Hydra read the command line and conf files."""
    for e in _chain(err):  # a YAML error names the file and the line: the best there is
        if isinstance(e, yaml.YAMLError):
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            what = getattr(e, "problem", None) or _one_line(str(e))
            if mark is not None:
                return (f"{mark.name} is not valid YAML: {what} (line {mark.line + 1}, "
                        f"column {mark.column + 1})")
            return f"a conf file is not valid YAML: {_one_line(str(e))}"
    if isinstance(err, OverrideParseException):
        return f"bad override: {_one_line(str(err))}"
    if isinstance(err, HydraException):
        msg = _one_line(str(err))
        cause = next((e for e in _chain(err)[1:] if isinstance(e, OmegaConfBaseException)), None)
        if cause is not None and getattr(cause, "full_key", None):
            msg += f" (key `{cause.full_key}`)"
        return msg
    if isinstance(err, OmegaConfBaseException):
        return omegaconf_message(err)
    where = _file_being_read(err)
    msg = f"{type(err).__name__}: {_one_line(str(err))}"
    return f"{where} cannot be read as a config ({msg})" if where else f"bad config: {msg}"


def task_config_error(err: BaseException) -> str | None:
    """One line if ``err``, raised by an entry point, is about its config, else None."""
    if isinstance(err, ConfigError):
        return _one_line(str(err))
    if isinstance(err, OmegaConfBaseException):  # a key the entry point reads is missing
        return f"config: {omegaconf_message(err)}"
    return None


def bad_conf_file() -> str | None:
    """Why a conf file this run was composed from is unusable, if one is: Hydra takes an empty
    file (a truncated or blanked one) as an empty group and runs on with the schema's defaults,
    which would run something other than what was asked for."""
    hc = HydraConfig.get()
    sources = [Path(s.path) for s in hc.runtime.config_sources if s.schema == "file"]
    names = [hc.job.config_name] + [
        f"{group}/{choice}" for group, choice in hc.runtime.choices.items()
        if isinstance(choice, str) and not group.startswith("hydra")]
    for src in sources:
        for name in names:
            path = src / f"{name}.yaml"
            if not path.is_file():
                continue
            content = yaml.safe_load(path.read_text())  # Hydra parsed it already: valid YAML
            if content is None:
                return f"{path} is empty"
            if not isinstance(content, dict):
                return f"{path} holds a {type(content).__name__}, not a mapping of settings"
    return None


def require_keys(cfg: DictConfig, *keys: str) -> None:
    """Raise ConfigError naming every dotted key of ``keys`` that ``cfg`` lacks or leaves
    ``???``: for entry points without a schema, before they start long work."""
    missing = [k for k in keys if OmegaConf.select(cfg, k, default="???") == "???"]
    if missing:
        raise ConfigError(f"missing config keys {missing}")


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _run_checked(task: Task, cfg: DictConfig) -> Any:
    """The entry point's task, behind the checks of the conf files it was composed from."""
    try:
        bad = bad_conf_file()
        if bad:
            raise ConfigError(bad)
        return task(cfg)
    except Exception as err:
        msg = None if _full_error() else task_config_error(err)
        if msg is None:
            raise  # with HYDRA_FULL_ERROR=1 an empty conf file is refused too, with traceback
    # SystemExit passes Hydra's job runner untouched (it would print "Error executing job")
    sys.exit(f"error: {msg}")


def _reporting(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Hydra's error reporter, with errors raised before any task ran in one line."""

    def run_and_report(func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception as err:
            in_task = any(f.f_code is _run_checked.__code__ for e in _chain(err)
                          for f in _frames(e.__traceback__))
            if _full_error() or in_task:
                return original(_raiser(err))  # Hydra's own report
            sys.exit(f"error: {composition_error(err)}")

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
        @functools.wraps(task)
        def checked_task(cfg: DictConfig) -> Any:
            return _run_checked(task, cfg)

        # Hydra names the job (log file, run folder) and finds ../conf from the task's file
        checked_task.__code__ = checked_task.__code__.replace(
            co_filename=task.__code__.co_filename)
        # absolute, so the entry point also finds conf/ when it is imported, not run
        conf_dir = Path(task.__code__.co_filename).resolve().parent / config_path
        main = hydra.main(config_path=str(conf_dir.resolve()), config_name=config_name,
                          version_base="1.3")(checked_task)

        @functools.wraps(task)
        def run(*args: Any, **kwargs: Any) -> Any:
            # Hydra reports every error through this module-level function (pinned hydra-core
            # 1.3.8): the one place that sees errors of composition (bad YAML, overrides) before
            # any of our code runs. tests/test_entry.py fails if an upgrade bypasses it.
            if not getattr(hydra_utils.run_and_report, "xnorlab", False):
                hydra_utils.run_and_report = _reporting(hydra_utils.run_and_report)
            return main(*args, **kwargs)

        return run

    return decorate
