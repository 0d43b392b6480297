"""The `trigger-engine` command group: its exit codes and the one place errors become
messages (the options and openers the commands share are in `options`)."""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

import click

from edge_module.distribution.edge_store import StoreError

from ..config import ConfigError
from ..distribution import publishing
from ..distribution.keys import KeyRingError
from ..rulepack import RulePackError

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports Ctrl-C: not a finding (1), not a usage error
EXIT_INTERNAL = 70  # a bug (sysexits' EX_SOFTWARE): neither the input's fault nor a finding
EXIT_PIPE = 141  # as a shell reports a command ended by SIGPIPE: its reader stopped reading


class Unavailable(click.ClickException):
    """Something outside the packs is missing or unreachable (a store, an edge, a file)."""

    exit_code = EXIT_USAGE


def exit_on_findings(found: bool) -> None:
    """Exit 1 when a check found something, for scripts."""
    if found:
        sys.exit(EXIT_FINDINGS)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so Python's own flush at exit does not fail again on the
    closed pipe ("Exception ignored ... BrokenPipeError")."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class _Group(click.Group):
    """Turns the errors commands raise into messages and exit codes, in this one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RulePackError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            click.echo(f"{len(exc.problems)} problem(s)", err=True)
            sys.exit(EXIT_FINDINGS)
        except publishing.RevisionError as exc:
            raise Unavailable(exc.message) from None
        except (KeyRingError, publishing.PublishError) as exc:
            raise Unavailable(str(exc)) from None
        except StoreError as exc:
            raise Unavailable(f"edge store: {exc}") from None
        except ConfigError as exc:
            raise Unavailable(str(exc)) from None
        except sqlite3.Error as exc:  # the telemetry store: damaged, or not a database
            raise Unavailable(f"telemetry store: {exc}") from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except UnicodeDecodeError as exc:  # a recording read as text
            raise Unavailable(f"the input is not UTF-8 text: {exc}") from None
        except BrokenPipeError:  # `trigger-engine report | head`: the reader has what it wanted
            _quiet_stdout()
            sys.exit(EXIT_PIPE)
        except OSError as exc:
            raise Unavailable(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) \
                from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # a bug: one line for the user, the trace for the report
            click.echo(f"internal error: {type(exc).__name__}: {exc}"[:500] + " (a bug in "
                       "trigger-engine: please report it with the command that caused it; "
                       "--debug shows where)", err=True)
            if ctx.find_root().params.get("debug"):
                import traceback
                traceback.print_exc()
            sys.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.option("--debug", is_flag=True, help="On an internal error (exit 70), also print "
              "where it happened (the traceback), for a bug report.")
def cli(debug: bool) -> None:
    """Write, check, test and publish rule packs for the edge trigger engine.

    A PATH is a rule pack file or a folder of them (*.yaml; *.test.yaml files are rule-pack
    tests and catalog.yaml is the content catalog, not packs). Problems are reported all at
    once as file:line:column, with what was expected and, for a near-miss name, a
    suggestion.

    \b
    Exit codes, for scripts:
      0  success: packs valid, no lint findings, every test passed, edge up to date
      1  findings: rule-pack problems, lint findings, failing tests, an edge
         serving another revision than the published one (status --edge)
      2  usage or environment error: bad arguments, a missing file, no test
         files, an unknown revision, an unavailable store or edge host, a bad setting
      70  internal error (a bug: the message says what; --debug prints where)
      130  interrupted (Ctrl-C)
      141  its output was cut off (a pipe to `head` stopped reading)
    """
