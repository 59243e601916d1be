"""How `--help` shows what an option or argument takes: a metavar a person reads (N, RUN,
FORMAT[,FORMAT...]), never a Python type.

Typer 0.29's rich help puts a `<type>` column beside every parameter (`<list[str]>`, `<path>`,
`<bool>` even for flags) and writes required arguments as `{name}` in the usage line. tk gives
each parameter a metavar (a test walks every command for it); this shows it in place of the type,
nothing for a flag (it takes no value), and the usage line as click writes it: RUN, [RUN], RUN...
"""

from __future__ import annotations

import typer


def _option_type(self, ctx):
    if getattr(self, "is_flag", False) or getattr(self, "count", False):
        return None
    return self.metavar or self.name.upper()


def _argument_type(self, ctx):
    return None  # the name column already shows the argument's metavar


def _argument_name(self) -> str:
    name = self.metavar or self.name.upper()
    return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")


def _argument_usage(self) -> str:
    name = self.metavar or self.name.upper()
    shown = name if self.required or name.startswith("[") else f"[{name}]"
    return shown + ("..." if self.nargs != 1 and not shown.endswith("...") else "")


def show_metavars_not_types() -> None:
    core = getattr(typer, "core", None)
    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if option is None or argument is None or getattr(option, "_tk_metavars", False):
        return  # another Typer: its own help stays as it is
    option.display_type_rich = _option_type
    argument.display_type_rich = _argument_type
    if hasattr(argument, "_rich_display_name"):
        argument._rich_display_name = _argument_name
    if hasattr(argument, "_usage_display_name"):
        argument._usage_display_name = _argument_usage
    option._tk_metavars = True
