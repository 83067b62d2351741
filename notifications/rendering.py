"""Templates of messages: Django's template language in a sandbox.

Operators write templates in the admin, so a template may only do what a message needs:
print the kind's variables (with the default filters), ``if``/``for``/``with`` and
comments. ``include``, ``extends``, ``load``, ``debug`` and every other tag are refused,
twice: when the template is saved (:func:`check_template`, with the tag's name) and by
the engine itself, which knows no other tag (a row written around ``Template.save`` does
not render either). The context holds only JSON values, copied afresh for each render
(:func:`json_values`): no model object whose methods a template could call, and nothing
a template's call of ``dict.clear`` or ``list.pop`` could change outside its render. A
template naming a variable its kind does not carry is refused when it is saved; a send
without one of the kind's variables is refused before anything is queued
(:func:`missing_variables`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.template import (
    Context,
    Engine,
    Library,
    TemplateSyntaxError,
    defaultfilters,
    defaulttags,
)
from django.template.base import FilterExpression, Lexer, Parser, TokenType

# Variables every message context has, whatever its kind.
BUILTIN_VARIABLES = ("recipient_name", "unsubscribe_url")
ALLOWED_TAGS = {
    "if",
    "elif",
    "else",
    "endif",
    "for",
    "empty",
    "endfor",
    "with",
    "endwith",
    "comment",
    "endcomment",
    "firstof",
    "spaceless",
    "endspaceless",
    "autoescape",
    "endautoescape",
    "now",
}
_WORDS = re.compile(r"(?<![\w.'\"])([A-Za-z_]\w*)(?:\.[\w.]+)?")
_KEYWORDS = {"and", "or", "not", "in", "is", "as", "reversed", "None", "True", "False", "on", "off"}


def _sandbox_library() -> Library:
    """Django's default filters and, of its tags, only ALLOWED_TAGS."""
    library = Library()
    library.filters.update(defaultfilters.register.filters)
    library.tags.update(
        {name: tag for name, tag in defaulttags.register.tags.items() if name in ALLOWED_TAGS}
    )
    return library


class _SandboxEngine(Engine):
    """An engine whose builtins are the sandbox library only: ``load``, ``extends``,
    ``include``, ``debug``... are unknown tags to it (Django's default engine adds
    defaulttags and loader_tags whole)."""

    def get_template_builtins(self, builtins: list[str]) -> list[Library]:
        return [_sandbox_library()]


# One engine, no loaders and no extra libraries: nothing a template can reach but its
# own text and the context.
_ENGINE = _SandboxEngine(loaders=[], libraries={}, autoescape=False, string_if_invalid="")


class TemplateProblem(ValueError):
    """A template that cannot be saved, with the reason."""


def _names_in_block(contents: str) -> tuple[str, set[str], set[str]]:
    """(tag, names it reads, names it binds) of a block tag's contents."""
    tag, _, rest = contents.partition(" ")
    bound: set[str] = set()
    if tag == "for" and " in " in rest:
        targets, _, rest = rest.partition(" in ")
        bound = {t.strip() for t in targets.split(",")}
    elif tag == "with":
        for part in rest.split():
            if "=" in part:
                name = part.partition("=")[0]
                bound.add(name)
        if " as " in rest:
            rest, _, name = rest.rpartition(" as ")
            bound.add(name.strip())
        rest = " ".join(p.partition("=")[2] if "=" in p else p for p in rest.split())
    elif tag in ("now", "comment"):
        return tag, set(), set()
    stripped = re.sub(r"'[^']*'|\"[^\"]*\"|\|\w+(?::\S+)?", " ", rest)
    read = {m.group(1) for m in _WORDS.finditer(stripped)} - _KEYWORDS
    return tag, read, bound


def used_variables(source: str) -> set[str]:
    """The top-level names ``source`` reads from its context (loop and ``with``
    variables excluded). TemplateProblem for a syntax error or a tag outside the
    sandbox."""
    names: set[str] = set()
    bound: set[str] = set()
    parser = Parser([], builtins=_ENGINE.template_builtins)
    in_comment = False
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            tag, read, binds = _names_in_block(token.contents)
            if tag not in ALLOWED_TAGS:
                raise TemplateProblem(f"the tag {{% {tag} %}} is not allowed in a message")
            in_comment = tag == "comment" or (in_comment and tag != "endcomment")
            if in_comment:
                continue
            names |= read
            bound |= binds
        elif token.token_type == TokenType.VAR and not in_comment:
            try:
                expression = FilterExpression(token.contents, parser)
            except TemplateSyntaxError as exc:
                raise TemplateProblem(str(exc)) from None
            var = getattr(expression.var, "var", None)
            if isinstance(var, str):
                names.add(var.split(".")[0])
            for _, args in expression.filters:
                for lookup, arg in args:
                    if lookup and isinstance(getattr(arg, "var", None), str):
                        names.add(arg.var.split(".")[0])
    return names - bound


def check_template(source: str, variables: Iterable[str]) -> None:
    """Refuse (TemplateProblem) a template that does not compile, uses a tag outside
    the sandbox, or names a variable the kind does not carry."""
    if not source:
        return
    unknown = used_variables(source) - set(variables) - set(BUILTIN_VARIABLES)
    if unknown:
        raise TemplateProblem(
            f"unknown variable(s) {', '.join(sorted(unknown))}; this kind carries "
            f"{', '.join(sorted(set(variables) | set(BUILTIN_VARIABLES)))}"
        )
    try:
        _ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(str(exc)) from None


def missing_variables(variables: Iterable[str], context: Mapping[str, Any]) -> list[str]:
    """The kind's variables ``context`` does not give."""
    return [name for name in variables if name not in context]


def json_values(context: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh copy of ``context`` made of JSON values only (objects with string keys,
    arrays, strings, numbers, booleans, null): all a template may see. TemplateProblem
    naming the first value that is not one (a model object, a date, a Decimal...)."""

    def copy(value: Any, where: str) -> Any:
        if value is None or isinstance(value, str | bool | int | float):
            return value
        if isinstance(value, Mapping):
            if not all(isinstance(key, str) for key in value):
                raise TemplateProblem(f"{where} has a key that is not a string")
            return {key: copy(item, f"{where}.{key}") for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [copy(item, f"{where}[{number}]") for number, item in enumerate(value)]
        raise TemplateProblem(
            f"{where} is a {type(value).__name__}, not a JSON value "
            "(give strings, numbers, booleans, lists or objects)"
        )

    return {str(name): copy(value, str(name)) for name, value in context.items()}


def render(source: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    """``source`` rendered with a fresh copy of ``context`` (JSON values only, else
    TemplateProblem); HTML-escaped when the output is HTML. TemplateProblem also for a
    template the sandbox's engine does not compile (a tag outside the sandbox in a row
    that did not go through ``Template.save``)."""
    if not source:
        return ""
    values = json_values(context)
    try:
        template = _ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(str(exc)) from None
    return template.render(Context(values, autoescape=html)).strip()
