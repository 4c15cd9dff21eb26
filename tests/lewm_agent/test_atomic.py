"""atomic_path: files get open()'s permissions even when the writer recreates them."""

import os
import stat

from lewm_agent.atomic import UMASK, atomic_path


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_writer_that_recreates_its_file_0600_still_leaves_umask_permissions(tmp_path):
    target = tmp_path / "weights.bin"
    with atomic_path(target) as tmp:
        os.unlink(tmp)  # what a writer that makes its own file does
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x")
        os.close(fd)
    assert target.read_bytes() == b"x"
    assert _mode(target) == 0o666 & ~UMASK


def test_safetensors_save_file_through_atomic_path(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    target = tmp_path / "head.safetensors"
    with atomic_path(target) as tmp:
        save_file({"w": torch.ones(2)}, str(tmp))
    assert _mode(target) == 0o666 & ~UMASK
    assert torch.equal(load_file(str(target))["w"], torch.ones(2))
