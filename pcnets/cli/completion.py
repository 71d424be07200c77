"""Shell completion of the Hydra overrides (`pcnets --install-completion` installs it): groups,
their options and keys, hydra/launcher=... and hydra.launcher.<key>, from Hydra's own completer."""

from __future__ import annotations

import os
import re

import typer


def complete_overrides(ctx: typer.Context, incomplete: str) -> list[str]:
    """What may follow the overrides typed so far, for the command being completed."""
    from pcnets.config import roots

    command = ctx.command.name if ctx.command.name in roots() else "config"
    earlier = [a for a in ctx.params.get("overrides") or [] if a != incomplete]
    bash = _bash_words()
    if bash is None:  # zsh, fish, powershell: the words arrive whole
        return hydra_completions(command, earlier, incomplete)
    # bash breaks words at '=' (it is in COMP_WORDBREAKS): 'backbone=vg' arrives as
    # 'backbone' '=' 'vg', and bash replaces only the part after the '='.
    earlier, current, replaced = bash
    found = hydra_completions(command, earlier, current)
    head = current[: len(current) - len(replaced)]
    return [c[len(head) :] for c in found if c.startswith(head)]


def _bash_words() -> tuple[list[str], str, str] | None:
    """(earlier overrides, the override being typed, the part of it bash replaces), rebuilt from
    COMP_WORDS / COMP_CWORD; None when not completing for bash."""
    if "COMP_WORDS" not in os.environ or "COMP_CWORD" not in os.environ:
        return None
    words = os.environ["COMP_WORDS"].split("\n")
    cword = int(os.environ["COMP_CWORD"])
    words = (words + [""])[: cword + 1]
    glued: list[str] = []
    for i, word in enumerate(words[2:], start=2):  # after the program and the command
        if glued and (word == "=" or words[i - 1] == "="):
            glued[-1] += word
        else:
            glued.append(word)
    replaced = "" if words[-1] == "=" else words[-1]
    earlier = [w for w in glued[:-1] if "=" in w or w.startswith("~")]
    return earlier, glued[-1] if glued else "", replaced


def hydra_completions(command: str, earlier: list[str], incomplete: str) -> list[str]:
    """Hydra's completion plugin (BashCompletion._query is what a @hydra.main app's
    `-sc query=bash` runs); completion must never break the shell, so any error gives nothing."""
    try:
        from hydra._internal.core_plugins.bash_completion import BashCompletion

        from pcnets.config import hydra_app, root_groups
        from pcnets.schema import GROUPS

        with hydra_app(command) as hydra:
            line = " ".join([*earlier, incomplete])
            found = BashCompletion(hydra.config_loader)._query(config_name=command, line=line)
    except Exception:
        return []
    # Hydra offers every group of the folder; a command composes only some of them
    other = set(GROUPS) - set(root_groups(command))
    return [item for item in found if re.split(r"[=./]", item, maxsplit=1)[0] not in other]
