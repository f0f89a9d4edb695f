import io

from fewmm.progress import PlainProgress, format_seconds, progress_bar


def test_plain_progress_lines():
    out = io.StringIO()
    bar = PlainProgress(total=100, desc="enc data", unit="item", initial=20, interval=0, stream=out)
    bar.update(30)
    bar.set_postfix(loss="0.5")
    bar.update(50)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("enc data: 50/100 item (50%), 0s elapsed, ~0s left")
    assert lines[1].startswith("enc data: 100/100 item (100%), 0s elapsed") and lines[1].endswith("loss=0.5")
    assert len(lines) == 3 and lines[2].startswith("enc data: 100/100 item (100%)")  # the closing line
    assert "\r" not in out.getvalue()
    quiet = io.StringIO()
    b = PlainProgress(total=10, interval=3600, stream=quiet)
    b.update(5)
    assert quiet.getvalue() == ""  # at most one line per interval ...
    b.close()
    assert quiet.getvalue().count("\n") == 1  # ... and one at the end


def test_not_a_terminal_gets_plain_lines(capsys):
    assert isinstance(progress_bar(total=3, desc="x"), PlainProgress)  # pytest's captured stderr is no terminal


def test_format_seconds():
    assert [format_seconds(s) for s in (9.2, 75.3, 4000)] == ["9s", "1m15s", "1h06m"]


def test_plain_progress_rate_and_time_left(monkeypatch):
    """items/s and time left from a controlled clock: 50 of 100 items in 2 s -> 25 item/s, ~2s left;
    a slow rate (1 item in 4 s) is shown as seconds per item."""
    import fewmm.progress as P

    now = [100.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = PlainProgress(total=100, desc="enc", unit="item", interval=0, stream=out)
    now[0] = 102.0
    bar.update(50)
    assert out.getvalue().splitlines()[-1] == "enc: 50/100 item (50%), 2s elapsed, ~2s left, 25 item/s"
    slow = PlainProgress(total=10, desc="enc", unit="item", interval=0, stream=out)
    now[0] = 106.0
    slow.update(1)
    assert out.getvalue().splitlines()[-1] == "enc: 1/10 item (10%), 4s elapsed, ~36s left, 4s/item"
