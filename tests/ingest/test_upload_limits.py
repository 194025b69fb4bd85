"""Uploaded files are read under their limits: headers, declared sizes and counts are checked
before anything is allocated or inflated (tests/api/test_hardening_uploads.py sends the same
files to a running API and measures its memory)."""
from __future__ import annotations

import io

import numpy as np
import pytest

from ingest import IngestError, files
from ingest.limits import FileLimits
from tests.ingest import attacks

LIMITS = FileLimits(max_bytes=8 * 1024**2, max_members=8, max_csv_rows=1000, max_csv_columns=50, max_csv_cells=2000)


def _read(name: str, data: bytes, limits: FileLimits = LIMITS, **kw):
    return files.read_upload(name, io.BytesIO(data), task="classification", limits=limits, **kw)


def test_npy_header_claiming_1e12_elements_is_refused_before_allocation():
    y = io.BytesIO()
    np.save(y, np.zeros(4, dtype=np.int64))
    with pytest.raises(IngestError, match=r"declares shape \[1000000000000\].*max_upload_inflated_bytes"):
        files.read_upload("x.npy", io.BytesIO(attacks.huge_header_npy()), task="classification",
                          targets=io.BytesIO(y.getvalue()), limits=LIMITS)


def test_npy_header_over_what_the_file_holds_is_refused():
    with pytest.raises(IngestError, match="holds at most"):
        files.read_npy(io.BytesIO(attacks.npy_header((1000, 100)) + b"\0" * 64), limits=LIMITS)


def test_object_arrays_are_refused_without_unpickling():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    buf.seek(0)
    with pytest.raises(IngestError, match="only numbers"):
        files.read_npy(buf, limits=LIMITS)


def test_npy_round_trips_c_and_fortran_order():
    for arr in (np.arange(24, dtype=np.float64).reshape(2, 3, 4), np.asfortranarray(np.arange(6.0).reshape(2, 3))):
        buf = io.BytesIO()
        np.save(buf, arr)
        buf.seek(0)
        np.testing.assert_array_equal(files.read_npy(buf, limits=LIMITS), arr)


def test_zip_bomb_is_refused_from_its_declared_sizes(tmp_path):
    bomb = attacks.zip_bomb(tmp_path / "bomb.npz", inflated=64 * 1024**2)
    assert bomb.stat().st_size < 1024**2
    with pytest.raises(IngestError, match=r"inflate to \d+ bytes \(as declared\).*max_upload_inflated_bytes"):
        _read("b.npz", bomb.read_bytes())


def test_member_inflating_past_its_declared_size_is_cut_at_the_declared_size():
    # the central directory says 256 bytes; the member's stream inflates to 4 MiB (within the
    # budget, so only the declared size stops it): zipfile stops at the declared size, where the
    # checksum fails, or the header's size is over what the member declares
    with pytest.raises(IngestError, match="holds at most 256 bytes|Bad CRC-32"):
        _read("b.npz", attacks.lying_zip(inflated=4 * 1024**2, declared=256))


def test_member_whose_header_claims_more_than_the_budget_is_refused():
    data = attacks.lying_zip(inflated=4096, declared=4096 + 128, header_shape=(10**12,))
    with pytest.raises(IngestError, match="declares shape"):
        _read("b.npz", data)


def test_archive_with_too_many_members_is_refused_before_its_directory_is_parsed():
    with pytest.raises(IngestError, match="members; at most 8"):
        _read("m.npz", attacks.many_members_zip(20))
    x, heads = _read("m.npz", attacks.many_members_zip(4))
    assert x.shape == (4, 2) and heads["output"].shape == (4,)


def test_npz_within_limits_reads():
    buf = io.BytesIO()
    np.savez_compressed(buf, inputs=np.ones((10, 3), np.float32), **{"targets.a": np.arange(10) % 2,
                                                                     "targets.b": np.arange(10) % 3})
    x, heads = _read("ok.npz", buf.getvalue())
    assert x.shape == (10, 3) and set(heads) == {"a", "b"}


def test_csv_columns_rows_and_cells_limits():
    with pytest.raises(IngestError, match="51 columns, over the limit max_csv_columns"):
        _read("w.csv", attacks.wide_csv(51), target_columns=["t"])
    with pytest.raises(IngestError, match="over 2000 cells"):
        _read("c.csv", attacks.many_cells_csv(rows=101, columns=20), target_columns=["t"])
    with pytest.raises(IngestError, match="over 1000 rows"):
        _read("r.csv", attacks.many_cells_csv(rows=1001, columns=1), limits=FileLimits(max_csv_rows=1000),
              target_columns=["t"])
    x, heads = _read("ok.csv", attacks.many_cells_csv(rows=100, columns=20), target_columns=["t"])
    assert x.shape == (100, 19) and heads["t"].tolist() == [1] * 100


def test_csv_line_longer_than_the_columns_allow_is_refused_before_it_is_split():
    line = "1," * (LIMITS.max_csv_line_chars // 2 + 10)
    with pytest.raises(IngestError, match="line 2 of the .csv is over"):
        _read("l.csv", f"a,t\n{line}1\n".encode(), target_columns=["t"])


def test_csv_row_of_another_width_names_the_row():
    with pytest.raises(IngestError, match="row 2 of the .csv has 3 fields; the header has 2"):
        _read("r.csv", b"a,t\n1,0\n1,2,3\n", target_columns=["t"])
