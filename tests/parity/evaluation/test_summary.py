"""`parity summary`: both ports side by side at their CIFAR-10 settings."""

from parity.cli import main
from parity.evaluation.summary import notebook_summary, original_summary


def test_parameters_per_component_add_up():
    nb, orig = notebook_summary(count_flops=False), original_summary(count_flops=False)
    assert nb.total_params == 5_991_811 and orig.total_params == 8_864_614
    assert orig.params["LP tokens"] == 256 * 256 and nb.params["LP tokens"] == 32 * 256
    assert (nb.sequence_length, orig.sequence_length) == (64 + 32, 256 + 256)
    assert (nb.train_queries, orig.train_queries) == (512, 1024)


def test_summary_command_prints_the_table(capsys):
    assert main(["summary", "--no-flops"]) == 0
    out = capsys.readouterr().out
    assert "params: encoder" in out and "8,864,614" in out
