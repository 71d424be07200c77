"""`pcnets configs`: the config groups, their options (each with its YAML's first comment line),
and which groups each command composes."""

from __future__ import annotations

import typer

from pcnets.cli.common import command, echo


@command("configs")
def configs(
    group: str | None = typer.Argument(None, help="Only this group, e.g. backbone."),
) -> None:
    """List the config groups and their options, and the groups each command composes.

    Pick an option with group=option (backbone=resnet18); print a command's whole resolved
    config with `pcnets COMMAND --cfg job ...`.
    """
    from pcnets.config import CONF_DIR, first_comment, groups, options, root_groups, roots
    from pcnets.errors import PcnetsError, suggest

    known = groups()
    if group is not None and group not in known:
        raise PcnetsError(f"unknown config group {group!r}{suggest(group, known)}; groups: {known}")
    commands = {name: root_groups(name) for name in roots()}
    for name in [group] if group else known:
        users = [c for c, used in commands.items() if name in used and c != "config"]
        echo(f"{name}/  (used by {', '.join(users) if name != 'experiment' else 'every command'})")
        width = max(len(o) for o in options(name))
        for option in options(name):
            echo(f"  {option:{width}s}  {first_comment(CONF_DIR / name / f'{option}.yaml')}")
    if group is None:
        echo("commands (root configs, conf/<command>.yaml):")
        width = max(len(c) for c in commands)
        for name, used in commands.items():
            comment = first_comment(CONF_DIR / f"{name}.yaml")
            echo(f"  {name:{width}s}  {', '.join(used) or '-'}: {comment}")
