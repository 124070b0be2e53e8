from kftune.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_one_line_exit_2(kftune_cli):
    proc = kftune_cli("frobnicate")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "unknown command 'frobnicate'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_arguments_prints_usage_and_fails(kftune_cli):
    proc = kftune_cli()
    assert proc.returncode == 2
    assert "usage: kftune" in proc.stdout
