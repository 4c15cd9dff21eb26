"""The dataset format, the storage layer of the method: writer, reader, tools.

Pure numpy + json (no env, no torch at import time), so any process can write or
read a dataset. On disk (see docs/formats.md)::

    DIR/meta.json            {"format_version": 1, "env_id", "image_size", "action_dim",
                              "action_low", "action_high", "state_dim", "collector",
                              "frameskip", "episodes": [{"file", "length"}, ...],
                              "num_episodes", "num_steps"}
    DIR/episodes/<name>.npz  pixels uint8 (T+1,H,W,3), actions float32 (T,A),
                             states float32 (T+1,S), terminated bool, truncated bool

Crash safety: an episode is written to a hidden temporary file in the same folder,
fsynced, then ``os.replace``d to its final name, so a reader sees either the whole
file or nothing; ``meta.json`` is rewritten the same way under an ``fcntl`` lock so
several processes (vector-env workers, each with its own name prefix) can record
into one folder. The folder listing is the truth; ``meta.json``'s list is an index,
updated in batches (at most every ``index_interval_s``, and on ``flush``/``close``),
so it may lag the folder; the next writer on the folder indexes what a crash left out.
Episodes are deflated at zlib level 1 by default (fast enough for a 0.2 ms/frame env).

Memory: in-memory datasets hold all frames in ONE uint8 array (episodes are views
into it), so window sampling is a single fancy-indexing gather and there is no
second copy. ``load_dataset(mmap=True)`` instead memory-maps each episode's arrays
straight from uncompressed ``.npz`` files (``EpisodeWriter(compress=False)``), for
datasets larger than RAM.

Modules (each imports only those above it):

- ``format``   names, ``meta.json`` (read, type-checked, locked), what a valid episode
  file holds, ``DatasetError`` / ``DiskFullError``
- ``reader``   ``Episode``, ``Dataset``, ``load_dataset``
- ``writer``   ``EpisodeWriter``
- ``windows``  ``ActionNormalizer`` and ``WindowSampler`` (what the trainer reads)
- ``hindsight`` ``HindsightSampler``: (start, goal) pairs for goal-conditioned imitation
- ``tools``    ``dataset_info``, ``verify_dataset``, ``iter_episodes``, ``repack_dataset``
- ``export``   ``export_minari``

Every name of ``__all__`` is importable from ``lewm_agent.data`` itself.
"""

from .export import export_minari
from .format import FORMAT_VERSION, DatasetError, DiskFullError, read_meta
from .hindsight import HindsightBatch, HindsightSampler
from .reader import Dataset, Episode, load_dataset
from .tools import (
    VerifyReport,
    dataset_info,
    format_dataset_info,
    iter_episodes,
    repack_dataset,
    verify_dataset,
)
from .windows import ActionNormalizer, WindowSampler
from .writer import EpisodeWriter

__all__ = [
    "FORMAT_VERSION",
    "ActionNormalizer",
    "Dataset",
    "DatasetError",
    "DiskFullError",
    "Episode",
    "EpisodeWriter",
    "HindsightBatch",
    "HindsightSampler",
    "VerifyReport",
    "WindowSampler",
    "dataset_info",
    "export_minari",
    "format_dataset_info",
    "iter_episodes",
    "load_dataset",
    "read_meta",
    "repack_dataset",
    "verify_dataset",
]
