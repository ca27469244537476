"""Command-line flags made from a config dataclass's fields, and the dataclass made back.

A job's options are the fields of its config (one source of truth): :class:`ConfigFlags` turns
each field into an argparse flag whose type comes from the annotation, whose default comes from
the field (or from a base instance) and whose help is the field's entry in the ``Attributes:``
section of the class docstring. A new field therefore appears in every CLI that reads its
class, with no second copy of its name, default or help.

Rules, field -> flag:
    name: ``--field-name`` (underscores -> dashes), after ``prefix-`` for a nested config
        (``prefix="cnn"``: ``ImageNetConfig.blocks`` -> ``--cnn-blocks``); ``names`` keeps an
        established flag name for a field (``names={"use_gpu": "gpu"}`` -> ``--gpu``). The
        argparse dest is always ``prefix_field``.
    int, float, str: one value of that type; ``X | None``: the same, None when not given.
    bool: ``--x`` / ``--no-x``. ``bool | None``: ``--x yes|no|auto``, where auto is None (a
        config's None for an optional switch means "decide automatically").
    ``Literal[...]``: one of its values.
    ``tuple[T, ...]``: one or more values; ``tuple[T, T]``: exactly two.
    ``dict[str, T]``: NAME=VALUE pairs, several after one flag or the flag repeated; they are
        added to the default's entries.
    Anything else (nested dataclasses, ZGrid, ColumnTemplate): no flag; the job sets the field.
    A field without a default is a required flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from raypz.job_errors import UsageError

_SCALARS = (int, float, str)
_METAVARS = {int: "N", float: "X"}
_OPTIONAL_BOOL = {"yes": True, "no": False, "auto": None}
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> its entry in the Google-style ``Attributes:`` section of ``cls``'s
    docstring, continuation lines joined by single spaces ({} without such a section)."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Attributes:"]
    if not starts:
        return {}
    section_indent = _indent(lines[starts[0]])
    entries: dict[str, list[str]] = {}
    entry_indent = None
    for line in lines[starts[0] + 1 :]:
        if not line.strip():
            continue
        indent = _indent(line)
        if indent <= section_indent:
            break
        entry_indent = indent if entry_indent is None else entry_indent
        head = re.match(r"(\w+)(?: \([^)]*\))?:\s*(.*)", line.strip())
        if indent == entry_indent and head:
            entries[head[1]] = [head[2]]
        elif entries:
            entries[list(entries)[-1]].append(line.strip())
    return {name: " ".join(parts).strip() for name, parts in entries.items()}


def _indent(line: str) -> int:
    """Leading spaces of ``line``."""
    return len(line) - len(line.lstrip())


@dataclasses.dataclass(frozen=True)
class _Kind:
    """How values of one field type are read from the command line.

    Attributes:
        options: ``add_argument`` keywords (type, nargs, choices, action, metavar).
        to_field: parsed value -> field value.
        to_arg: field value -> argparse default.
    """

    options: Mapping[str, Any]
    to_field: Callable[[Any], Any] = lambda value: value
    to_arg: Callable[[Any], Any] = lambda value: value


def flag_kind(hint: Any) -> _Kind | None:
    """How a field annotated ``hint`` (a resolved type) reads from the command line; None
    when it has no flag form (see the module rules)."""
    inner, optional = _strip_none(hint)
    if inner is bool and optional:
        return _optional_bool_kind()
    if inner is bool:
        return _Kind({"action": argparse.BooleanOptionalAction})
    kind = _plain_kind(inner)
    if kind is None or not optional:
        return kind
    return dataclasses.replace(kind, to_field=lambda v: None if v is None else kind.to_field(v))


def _strip_none(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _optional_bool_kind() -> _Kind:
    """``bool | None``: yes, no or auto (None)."""
    return _Kind(
        {"choices": tuple(_OPTIONAL_BOOL)},
        to_field=_OPTIONAL_BOOL.__getitem__,
        to_arg=lambda value: {v: k for k, v in _OPTIONAL_BOOL.items()}[value],
    )


def _plain_kind(hint: Any) -> _Kind | None:
    """The kind of a type that is not ``bool`` and not optional."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALARS:
        return _Kind({"type": hint, **_metavar(hint)})
    if origin is Literal and len({type(a) for a in args}) == 1 and type(args[0]) in _SCALARS:
        return _Kind({"type": type(args[0]), "choices": args})
    if origin is tuple and args and args[0] in _SCALARS:
        if len(args) == 2 and args[1] is Ellipsis:
            return _Kind({"type": args[0], "nargs": "+", **_metavar(args[0])}, to_field=tuple)
        if all(a is args[0] for a in args):
            options = {"type": args[0], "nargs": len(args), **_metavar(args[0])}
            return _Kind(options, to_field=tuple)
    if origin is dict and args[0] is str and args[1] in _SCALARS:
        return _Kind(
            {
                "type": _pair_reader(args[1]),
                "nargs": "+",
                "action": _PairsAction,
                "metavar": "NAME=VALUE" if args[1] is str else "NAME=AMOUNT",
            },
            to_field=_distinct_names,
            to_arg=lambda value: list(value.items()),
        )
    return None


class _PairsAction(argparse.Action):
    """NAME=VALUE pairs of a dict field: the flag's first use replaces the default (a
    ``--config`` file's entries, which argparse's ``extend`` kept, so a flag could neither
    change nor drop them), later uses add to it, as a flag of any other field sets it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = getattr(namespace, self.dest, None)
        before = [] if given is None or given is self.default else list(given)
        setattr(namespace, self.dest, before + list(values))


def _distinct_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """NAME=VALUE pairs (argparse's list; the default too, by ``to_arg``) as a dict; a NAME
    given twice is a ``ValueError`` (the first value would be dropped without a word)."""
    names = [name for name, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"NAME=VALUE pairs: {', '.join(repeated)} given more than once")
    return dict(pairs)


def _metavar(value_type: type) -> dict[str, str]:
    """A short metavar for numbers (N, X); strings keep argparse's (the dest in capitals)."""
    return {"metavar": _METAVARS[value_type]} if value_type in _METAVARS else {}


def _pair_reader(value_type: type) -> Callable[[str], tuple[str, Any]]:
    """A ``type=`` for argparse: ``"NAME=VALUE"`` -> ``(NAME, value_type(VALUE))``."""

    def read(text: str) -> tuple[str, Any]:
        name, sep, value = text.partition("=")
        try:
            if sep and name.strip() and value:
                return name.strip(), value_type(value)
        except ValueError:
            pass
        kind = "VALUE" if value_type is str else f"AMOUNT ({value_type.__name__})"
        raise argparse.ArgumentTypeError(f"expected NAME={kind}, got {text!r}")

    return read


@dataclasses.dataclass(frozen=True)
class _Flag:
    """One field's flag: its name, argparse dest, kind and add_argument keywords."""

    field: str
    flag: str
    dest: str
    kind: _Kind
    options: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ConfigFlags:
    """The flags of one config dataclass's fields, and the config built back from them.

    Attributes:
        cls: the (frozen) config dataclass.
        prefix: prefix of every flag and dest of a nested config (``"cnn"`` -> ``--cnn-x``).
        exclude: fields that get no flag (the job sets them).
        include: if given, the only fields that get a flag.
        names: field -> flag name (without dashes or prefix) where an established name is kept.
        extra: field -> further ``add_argument`` keywords (choices from a constant, required,
            metavar).
        base: instance whose values are the defaults and which :meth:`build` starts from;
            None: the fields' own defaults.
        title: title of the flags' group in ``--help`` (default: the class name); the group's
            description is the docstring's first line unless ``include`` picks a few fields.
    """

    cls: type
    prefix: str = ""
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] | None = None
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    base: Any = None
    title: str | None = None

    def __post_init__(self) -> None:
        known = {f.name for f in dataclasses.fields(self.cls)}
        named = {*self.exclude, *(self.include or ()), *self.names, *self.extra}
        if named - known:
            raise ValueError(f"{self.cls.__name__} has no field(s) {sorted(named - known)}")

    def flags(self) -> list[_Flag]:
        """Every flag, in field order; fields without a flag form are left out (ValueError when
        ``include`` names one)."""
        hints = typing.get_type_hints(self.cls)
        docs = attribute_docs(self.cls)
        chosen = []
        for f in dataclasses.fields(self.cls):
            kind = flag_kind(hints[f.name])
            wanted = self.include is None or f.name in self.include
            if f.init and wanted and f.name not in self.exclude and kind is not None:
                chosen.append((f, kind))
            elif self.include is not None and f.name in self.include:
                raise ValueError(f"{self.cls.__name__}.{f.name} has no flag form")
        refs = {f.name: self._flag_name(f.name) for f, _ in chosen}
        return [self._flag(f, kind, docs.get(f.name, ""), refs) for f, kind in chosen]

    def _flag_name(self, field: str) -> str:
        """``--prefix-field-name``, or ``--`` + the field's entry in ``names``."""
        name = self.names.get(field) or "-".join(p for p in (self.prefix, field) if p)
        return "--" + name.replace("_", "-")

    def _flag(self, f: dataclasses.Field, kind: _Kind, doc: str, refs: Mapping[str, str]) -> _Flag:
        """The flag of field ``f``; ``refs`` maps sibling fields to their flags for the help."""
        flag = self._flag_name(f.name)
        options = {**kind.options, **self.extra.get(f.name, {})}
        default = self._default(f)
        if default is dataclasses.MISSING:
            options.setdefault("required", True)
        elif not options.get("required"):
            options["default"] = kind.to_arg(default)
        options["help"] = _help(doc, refs, _shown_default(options, flag))
        dest = "_".join(p for p in (self.prefix, f.name) if p).replace("-", "_")
        return _Flag(f.name, flag, dest, kind, options)

    def _default(self, f: dataclasses.Field) -> Any:
        """The field's default: the base's value, else its own (MISSING when it has none)."""
        if self.base is not None:
            return getattr(self.base, f.name)
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return f.default

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add the flags to ``parser``, in a group of their own."""
        summary = inspect.cleandoc(self.cls.__doc__ or "").split("\n", 1)[0]
        description = _plain(summary).replace("%", "%%") if self.include is None else None
        group = parser.add_argument_group(self.title or self.cls.__name__, description)
        for spec in self.flags():
            action = group.add_argument(spec.flag, dest=spec.dest, **spec.options)
            action.help = spec.options["help"]  # BooleanOptionalAction appends its own default

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """Field -> value, for the fields that have a flag, from parsed ``args``; a value the
        field refuses is a ValueError that names the flag."""
        values = {}
        for s in self.flags():
            try:
                values[s.field] = s.kind.to_field(getattr(args, s.dest))
            except ValueError as err:
                raise ValueError(f"{s.flag}: {err}") from err
        return values

    def build(self, args: argparse.Namespace, **fixed: Any) -> Any:
        """The config the parsed ``args`` describe: ``base`` (or the class's defaults) with the
        flags' values and the ``fixed`` fields that the job sets itself. Raises the config's
        own ValueError when the values break its rules."""
        values = {**self.values(args), **fixed}
        if self.base is not None:
            return dataclasses.replace(self.base, **values)
        return self.cls(**values)

    def changed(self, args: argparse.Namespace) -> list[str]:
        """The flags whose parsed value differs from their default (to refuse flags that
        would have no effect)."""
        return [
            s.flag
            for s in self.flags()
            if "default" in s.options
            and s.kind.to_field(getattr(args, s.dest)) != s.kind.to_field(s.options["default"])
        ]


def _help(doc: str, refs: Mapping[str, str], default: str) -> str:
    """argparse help: the docstring entry in plain text (sibling fields named by their flags),
    ``%`` escaped, then the default."""
    text = _plain(doc, refs).replace("%", "%%")
    return f"{text} ({default})" if default else text


def _plain(text: str, refs: Mapping[str, str] | None = None) -> str:
    """Docstring markup -> plain text: ``:role:`a.b``` -> a.b (``~a.b`` -> b), ````x```` -> x,
    or x's flag when x is in ``refs``."""
    text = _ROLE.sub(lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2], text)
    return _LITERAL.sub(lambda m: (refs or {}).get(m[1], m[1]), text)


def _shown_default(options: Mapping[str, Any], flag: str) -> str:
    """``default: ...`` for the help, or "" (required flags, None defaults)."""
    if options.get("required") or options.get("default") is None:
        return ""
    value = options["default"]
    if options.get("action") is argparse.BooleanOptionalAction:
        shown = flag if value else "--no-" + flag[2:]
    elif isinstance(value, (list, tuple)):
        shown = " ".join(_shown_item(v) for v in value) or "none"
    else:
        shown = str(value)
    return f"default: {shown}".replace("%", "%%")


def _shown_item(value: Any) -> str:
    """One element of a tuple default, or one NAME=VALUE pair of a dict default."""
    return f"{value[0]}={value[1]}" if isinstance(value, tuple) else str(value)


def add_ray_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of every job that runs on Ray: ``--num-cpus`` and ``--verbose``, passed to
    :func:`raypz.ray_runtime.init_ray`."""
    group = parser.add_argument_group("Ray")
    group.add_argument(
        "--num-cpus",
        type=_positive_int,
        metavar="N",
        help="CPUs of an embedded local Ray (ignored on a cluster)",
    )
    group.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's own logs and progress bars (default: they go to the Ray session's "
        "log directory)",
    )


def output_path(text: str) -> str:
    """argparse ``type`` of a path a job writes: local or a URI, but not relative under
    ``ray job submit --working-dir``, where the job runs in Ray's temporary copy of that
    directory (on the head node): the output would be written there and lost with the
    session, while the job reports success. An empty or blank path is refused (it wrote into
    the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a directory (local or s3://)")
    if "://" in text or os.path.isabs(text) or not submitted_with_working_dir():
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is relative, and this job runs in Ray's temporary copy of --working-dir, "
        "where it would be written and lost; give an absolute path that every node reaches, "
        "or s3://"
    )


def submitted_with_working_dir() -> bool:
    """True in a driver started by ``ray job submit --working-dir`` (Ray passes the job's
    runtime_env in ``RAY_JOB_CONFIG_JSON_ENV_VAR``)."""
    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    except ValueError:
        return False
    runtime_env = job.get("runtime_env") if isinstance(job, dict) else None
    return isinstance(runtime_env, dict) and bool(runtime_env.get("working_dir"))


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a local Ray of 0 CPUs runs no task, and waits)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (NaN and inf pass a plain ``> 0`` test)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_config_flag(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--config FILE``: a saved ``cls`` (JSON) whose values are the flags' defaults; see
    :func:`config_file_base`."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"a {cls.__name__} saved as JSON (local or s3://; a model.json gives the config its "
        "model was trained with): the base of the flags, which override what they set",
    )


def config_file_base(argv: list[str] | None, cls: type) -> Any:
    """The ``cls`` saved in the ``--config FILE`` of a command line (None without the flag),
    for :class:`ConfigFlags`'s ``base=``. ``argv`` None: ``sys.argv[1:]``. UsageError when
    the file cannot be read as a ``cls``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    path = pre.parse_known_args(argv)[0].config
    if path is None:
        return None
    try:
        return read_config_file(path, cls)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise UsageError(f"--config {path}: {err}") from err


def parse_with_config_base(
    argv: list[str] | None, cls: type, build_parser: Callable[[Any], argparse.ArgumentParser]
) -> argparse.Namespace:
    """Parse ``argv`` with ``build_parser(base)``, whose flags default to ``base``: the ``cls``
    of the ``--config FILE`` (:func:`config_file_base`; None without one). The namespace keeps
    it as ``base_config``."""
    base = config_file_base(argv, cls)
    args = build_parser(base).parse_args(argv)
    args.base_config = base
    return args


def read_config_file(path: str, cls: type) -> Any:
    """A config dataclass from JSON (local or URI): ``cls.to_dict()``'s form, or a model.json
    (its ``training.config``). Fields the file leaves out keep their defaults; an unknown
    field is a ValueError."""
    from raypz import io

    data = json.loads(io.read_bytes(path))
    if isinstance(data, dict) and isinstance(data.get("training"), dict):
        data = data["training"].get("config", data)  # a model.json
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    return cls.from_dict(data)  # fields the file leaves out keep their defaults
