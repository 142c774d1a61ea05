"""Files the stages write are replaced only by a complete new version."""

from __future__ import annotations

import pytest
from tamx.pipeline.files import atomic_path, write_text


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as partial:
        partial.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert list(target.parent.iterdir()) == [target]
    write_text(target, "new")
    assert target.read_text() == "new"
