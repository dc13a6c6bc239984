"""What every command shares: a LedgerError becomes one error line, printed exactly as raised."""

import typer
from typer.testing import CliRunner

from ledger.errors import ConfigError, LedgerError
from node.cli._common import handle_errors


def _app(error: LedgerError) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @handle_errors
    def boom() -> None:
        raise error

    return app


def test_a_ledger_error_is_one_line_with_its_exit_code_and_brackets_kept():
    result = CliRunner().invoke(_app(ConfigError("set [store] api in fedledger.toml; then retry.")), [])
    assert result.exit_code == 1
    assert result.output.strip() == "error: set [store] api in fedledger.toml; then retry."


def test_an_error_class_chooses_its_exit_code():
    class CannotRun(LedgerError):
        exit_code = 2

    result = CliRunner().invoke(_app(CannotRun("no chain answers; start one.")), [])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_version_prints_the_installed_package_version():
    from importlib.metadata import version

    from node.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"fedledger {version('fedledger')}\n"
