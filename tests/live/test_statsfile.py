"""``--stats``: lines on disk per batch; a failing disk keeps them for later, warns once."""

from __future__ import annotations

from antiphon.atomic import read_lines
from antiphon.live.statsfile import StatsFile


def test_lines_survive_a_failing_disk_and_go_out_when_it_recovers(tmp_path, caplog) -> None:
    blocker = tmp_path / "stats"
    blocker.write_text("a file where the folder should be")
    stats = StatsFile(blocker / "stats.jsonl")
    with caplog.at_level("WARNING", logger="antiphon.live.statsfile"):
        for i in range(3):
            with stats.batch() as f:
                f.write(f'{{"answer": {i}}}\n')
        assert len(caplog.records) == 1 and "stats.jsonl: cannot write" in caplog.text
        blocker.unlink()
        blocker.mkdir()
        with stats.batch() as f:
            f.write('{"answer": 3}\n')
    assert read_lines(blocker / "stats.jsonl") == [f'{{"answer": {i}}}' for i in range(4)]
    assert "written again" in caplog.records[-1].getMessage()
