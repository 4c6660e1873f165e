"""`xenlab ssh HOST COMMAND...`: what text reaches the host's shell."""

from xenlab.cli import remote_command


def test_one_word_is_a_whole_command_line():
    assert remote_command(("systemctl is-active ssh; echo $HOME",)) == "systemctl is-active ssh; echo $HOME"


def test_several_words_are_quoted_as_ssh_users_expect():
    assert remote_command(("ls", "-l", "/tmp/a b")) == "ls -l '/tmp/a b'"


def test_a_leading_double_dash_only_ends_xenlabs_options():
    assert remote_command(("--", "xl", "info")) == "xl info"
    assert remote_command(("--", "xl info; uptime")) == "xl info; uptime"
    assert remote_command(("echo", "--")) == "echo --"
