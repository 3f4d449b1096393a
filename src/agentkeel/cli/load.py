"""Loading an agent from where a person says it is: ``path/to/file.py:NAME`` or ``package.module:NAME``.

Every way this can go wrong (no such file, no such module, the file raises while it loads, no such name, the
name is not an ``Agent``) ends as one ``UsageProblem`` sentence that says what was wrong and what to write.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from agentkeel.agent import Agent
from agentkeel.bus.routes import Route
from agentkeel.cli.exits import UsageProblem
from agentkeel.errors import KeelError
from agentkeel.patterns.pipeline import Pipeline

EXAMPLE = "examples/support_desk.py:agent"
ROUTES_EXAMPLE = "examples/bus_chain.py:routes"


def load_agent(ref: str) -> tuple[Agent, str]:
    """The ``Agent`` a reference names, and the reference in the form ``keel resume`` can use from anywhere
    (a file's absolute path, or the module path as given)."""
    found, canonical = load_runnable(ref)
    if isinstance(found, Pipeline):
        raise UsageProblem(f"{ref!r} is a pipeline, not an agent: `keel run {ref} INPUT` runs it")
    return found, canonical


def load_runnable(ref: str) -> tuple[Agent | Pipeline, str]:
    """The ``Agent`` or ``Pipeline`` a reference names, and the reference in its canonical form."""
    module, target, name, canonical = _module_of(ref)
    return _agent_in(module, target, name), canonical


def load_routes(ref: str) -> list[Route]:
    """The bus routes a reference names: a list of ``Route`` objects, or a function of no arguments that
    returns one."""
    module, target, name, _ = _module_of(ref, example=ROUTES_EXAMPLE)
    if not hasattr(module, name):
        listed = sorted(key for key, value in vars(module).items() if _is_routes(value))
        hint = f": the routes in it: {', '.join(listed)}" if listed else f": define `{name} = [Route(...), ...]`"
        raise UsageProblem(f"{target} has no {name!r}{hint}")
    found = getattr(module, name)
    if callable(found) and not isinstance(found, Route):
        try:
            found = found()
        except TypeError as exc:
            raise UsageProblem(f"{name} in {target} must take no arguments to give the routes: {exc}") from exc
    if isinstance(found, Route):
        found = [found]
    if not _is_routes(found):
        raise UsageProblem(
            f"{name!r} in {target} is a {type(found).__name__}, not a list of Route objects: write "
            f"`{name} = [Route('topic', agent, reply='next.topic'), ...]`"
        )
    return list(found)


def _is_routes(value: object) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(item, Route) for item in value)


def _module_of(ref: str, *, example: str = EXAMPLE) -> tuple[ModuleType, str, str, str]:
    """The module a ``FILE.py:NAME`` or ``module:NAME`` reference names, its target, the name, and the canonical
    reference."""
    target, sep, name = ref.strip().rpartition(":")
    if not sep or not target or not name:
        raise UsageProblem(f"{ref!r} does not say where to look: write FILE.py:NAME or module:NAME, e.g. {example}")
    if not name.isidentifier():
        raise UsageProblem(f"{name!r} in {ref!r} is not a Python name: write FILE.py:NAME, e.g. {example}")
    if _looks_like_path(target):
        path = Path(target).expanduser().resolve()
        return _import_file(target, path), target, name, f"{path}:{name}"
    return _import_module(target), target, name, f"{target}:{name}"


def _looks_like_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import_file(target: str, path: Path) -> ModuleType:
    if not path.is_file():
        hint = f"; did you mean {target}.py?" if Path(f"{target}.py").is_file() else ""
        raise UsageProblem(
            f"no file {target!r} (looked for {path}){hint}: write FILE.py:NAME with the path to the Python file "
            f"that defines the agent, e.g. {EXAMPLE}"
        )
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"keel_agent_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageProblem(f"{target!r} cannot be imported as Python: name a .py file, e.g. {EXAMPLE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pydantic look their module up while it loads
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so that the file can import its neighbours, as `python file.py` would
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise _import_failed(target, exc) from exc
    return module


def _import_module(target: str) -> ModuleType:
    if not all(part.isidentifier() for part in target.split(".")):
        raise UsageProblem(f"{target!r} is neither a .py file nor a module path: write FILE.py:NAME or module:NAME")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # as `python -m` would
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (target == exc.name or target.startswith(f"{exc.name}.")):
            raise UsageProblem(
                f"no module {target!r} (searched the current directory and the installed packages): write "
                f"FILE.py:NAME for a file, e.g. {EXAMPLE}, or the module path of an installed package"
            ) from exc
        raise _import_failed(target, exc) from exc
    except BaseException as exc:
        raise _import_failed(target, exc) from exc


def _import_failed(target: str, exc: BaseException) -> UsageProblem | BaseException:
    if isinstance(exc, KeyboardInterrupt):
        return exc
    if isinstance(exc, KeelError):  # the agent's own configuration, e.g. a tool without type hints
        return UsageProblem(f"loading {target}: {exc}")
    if isinstance(exc, SyntaxError):
        return UsageProblem(f"{target} has a syntax error at line {exc.lineno}: {exc.msg}")
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" (at {last.filename}:{last.lineno})"
    if isinstance(exc, SystemExit):
        return UsageProblem(f"loading {target} called sys.exit({exc.code}){where}: an agent file must not exit")
    return UsageProblem(f"loading {target} failed: {type(exc).__name__}: {exc}{where}")


def _agent_in(module: ModuleType, target: str, name: str) -> Agent | Pipeline:
    agents = sorted(key for key, value in vars(module).items() if isinstance(value, Agent | Pipeline))
    found = getattr(module, name, None)
    if isinstance(found, Agent | Pipeline):
        return found
    if found is None and not hasattr(module, name):
        listed = f"the agents in it: {', '.join(agents)}" if agents else "it defines no Agent at module level"
        suggestion = f"{target}:{agents[0]}" if agents else f"{target}:agent after `agent = Agent(...)` in it"
        raise UsageProblem(f"{target} has no {name!r} ({listed}): write {suggestion}")
    kind = type(found).__name__
    suggestion = f"; the agents in it: {', '.join(agents)}" if agents else ""
    raise UsageProblem(
        f"{name!r} in {target} is a {kind}, not an Agent or a Pipeline: point at an Agent object "
        f"(`{name} = Agent(name=..., model=..., tools=[...])`) or a Pipeline{suggestion}"
    )
