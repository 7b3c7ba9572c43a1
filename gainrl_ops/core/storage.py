"""Where artifacts live, and how they are written so that readers never see half a file."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # every module that lays out paths imports this one; `gainrl sql` need not load Arrow
    import pyarrow as pa

HOME_ENV = "GAINRL_HOME"
# atomic_directory's temporary folders: "." + target name + "." + mkdtemp's 8 random characters.
_TEMP_DIR = re.compile(r"\..+\.[a-z0-9_]{8}")
_DEFAULT_HOME = Path(__file__).resolve().parents[2] / "data" / ".gainrl"
# Rows per Parquet row group: enough row groups for a scan to split across threads and to
# skip by their statistics (pyarrow's default of 1Mi rows makes a million-row file one group).
ROW_GROUP_ROWS = 131_072


def storage_root() -> Path:
    """The storage root: `$GAINRL_HOME`, else the ignored folder `data/.gainrl` of the checkout."""
    root = Path(os.environ.get(HOME_ENV) or _DEFAULT_HOME).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; on success rename it over `target`.

    The rename is atomic on POSIX within one file system, so a reader sees either the old
    file or the complete new one, and an interrupted writer leaves the old one intact.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as error:
        if error.filename is None:  # Arrow's write errors name no file: name the artifact
            raise OSError(error.errno, error.strerror or str(error), str(target)) from error
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet_atomic(table: pa.Table, target: Path, use_dictionary: bool | list[str] = True) -> Path:
    """Write `table` to `target` through a temporary file and an atomic rename.
    `use_dictionary`: the columns to dictionary-encode (all by default)."""
    import pyarrow.parquet as pq

    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS, use_dictionary=use_dictionary)
    return Path(target)


class ParquetBytes:
    """A Parquet file made in memory from tables given in order, in row groups of ROW_GROUP_ROWS
    rows as `write_parquet_atomic` makes them: for a file encoded while its rows are still
    being made, or whose name is known only once it is encoded."""

    def __init__(
        self, schema: pa.Schema, use_dictionary: bool | list[str] = True, compression: str = "zstd", write_statistics: bool | list[str] = True
    ):
        import pyarrow.parquet as pq

        # io.BytesIO, not Arrow's BufferOutputStream: that one doubles its capacity as it grows, and
        # holds up to twice the file for as long as the bytes are kept.
        self._sink = io.BytesIO()
        self._writer = pq.ParquetWriter(
            self._sink, schema, compression=compression, use_dictionary=use_dictionary, write_statistics=write_statistics
        )
        self._held: list[pa.Table] = []  # rows not yet a whole row group
        self._rows = 0

    def write(self, table: pa.Table) -> None:
        import pyarrow as pa

        self._held.append(table)
        self._rows += table.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            held = pa.concat_tables(self._held)
            whole = self._rows // ROW_GROUP_ROWS * ROW_GROUP_ROWS
            self._writer.write_table(held.slice(0, whole), row_group_size=ROW_GROUP_ROWS)
            self._held, self._rows = [held.slice(whole)], self._rows - whole

    def finish(self) -> memoryview:
        """The file's bytes."""
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.concat_tables(self._held), row_group_size=ROW_GROUP_ROWS)
        self._writer.close()
        return self._sink.getbuffer()


def write_bytes_atomic(data: bytes | memoryview, target: Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(text: str, target: Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def sweep_temporary(directory: Path, started: float) -> list[Path]:
    """Delete what interrupted writers left in `directory` before `started` (a time.time()):
    temporary files of `atomic_path`, folders of `atomic_directory` and retired folders.
    Newer ones may belong to a writer that is still running, so they stay."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        if not path.name.startswith(".") or path.stat().st_mtime >= started:
            continue
        if path.is_file() and path.name.endswith((".tmp", ".tmp.wal")):
            path.unlink(missing_ok=True)
        elif path.is_dir() and (path.name.startswith(".retired-") or _TEMP_DIR.fullmatch(path.name)):
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        removed.append(path)
    return removed


def replace_directory(source: Path, target: Path) -> None:
    """Move the complete folder `source` to `target`, replacing what was there.

    Two renames: readers see the old folder, then (for an instant) none, then the new one;
    never a mix of old and new files.
    """
    target = Path(target)
    retired = target.with_name(f".retired-{target.name}")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    Path(source).rename(target)
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder of `target`; on success it replaces `target`, so an
    interrupted writer never leaves a half-written folder under the real name."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        replace_directory(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def restored_on_error(target: Path) -> Iterator[None]:
    """Undo what the block does to the file `target` if the block fails: the previous file comes
    back (kept as a hard link, so keeping it takes no space on a full disk), or a file that was
    not there goes away. For a write that must succeed or fail together with what follows it.

    The link is named `.<name>.<random>.kept`: not a temporary file that `sweep_temporary`
    removes by age (a link is as old as the file). One left by a killed process is removed by
    the next block over the same file."""
    target = Path(target)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.kept"):
        stale.unlink(missing_ok=True)
    kept = target.with_name(f".{target.name}.{secrets.token_hex(4)}.kept")
    existed = target.exists()
    if existed:
        os.link(target, kept)
    try:
        yield
    except BaseException:
        if existed:
            os.replace(kept, target)
        else:
            target.unlink(missing_ok=True)
        raise
    finally:
        kept.unlink(missing_ok=True)
